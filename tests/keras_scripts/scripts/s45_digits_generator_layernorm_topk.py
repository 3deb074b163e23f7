"""A Python generator of shuffled batches fed to fit with steps_per_epoch; LayerNormalization;
Adamax; metrics 'accuracy' and TopKCategoricalAccuracy(k=3)."""
import os

import numpy as np
import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=4)
y_train = keras.utils.to_categorical(y_train, 10)
y_test = keras.utils.to_categorical(y_test, 10)


def batches(x, y, batch_size):
    while True:
        order = np.random.permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]


model = keras.Sequential([
    keras.Input(shape=(64,)),
    keras.layers.Dense(64),
    keras.layers.LayerNormalization(),
    keras.layers.Activation("relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.Adamax(learning_rate=0.002), loss="categorical_crossentropy",
              metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(k=3, name="top3_acc")])
batch_size = 32
history = model.fit(batches(x_train, y_train, batch_size), steps_per_epoch=len(x_train) // batch_size,
                    epochs=6, verbose=0)
scores = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
results = {"loss": history.history["loss"][-1], "train_acc": history.history["accuracy"][-1],
           "test_loss": scores["loss"], "test_accuracy": scores["accuracy"], "test_top3_acc": scores["top3_acc"],
           "n_params": model.count_params()}
print(results)
