"""Functional API: keras.Input, layers called on tensors, keras.Model(inputs, outputs), 'adamw'."""
import os

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)

inputs = keras.Input(shape=(64,), name="pixels")
h = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
h = keras.layers.Dense(64, activation="relu", name="dense_2")(h)
outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(h)
model = keras.Model(inputs=inputs, outputs=outputs, name="digits_mlp")
model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_accuracy": test_acc,
           "n_params": model.count_params()}
print(results)
