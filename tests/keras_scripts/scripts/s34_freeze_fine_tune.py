"""Transfer-style training: layer.trainable = False, recompile, fine-tune the head."""
import os

import numpy as np
import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(64,)),
    keras.layers.Dense(64, activation="relu", name="feature"),
    keras.layers.Dense(10, activation="softmax", name="head"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0)

feature = model.get_layer("feature")
frozen = [w.copy() for w in feature.get_weights()]
feature.trainable = False
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
unchanged = all(np.array_equal(a, b) for a, b in zip(frozen, feature.get_weights()))
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_accuracy": test_acc,
           "frozen_unchanged": unchanged, "trainable_weights": len(model.trainable_weights)}
print(results)
