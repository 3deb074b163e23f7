"""Pair features for a two-input model: the difference and the elementwise product of two
encoded inputs (keras.layers.Subtract, keras.layers.Multiply), concatenated into a classifier."""
import os

import numpy as np
import keras
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

rng = np.random.default_rng(5)
a = rng.normal(size=(3000, 8)).astype("float32")
b = rng.normal(size=(3000, 8)).astype("float32")
same = (np.abs(a[:, :4] - b[:, :4]).sum(axis=1) < 3.2).astype("float32")  # "close in the first 4 dims"
b[same == 1, :4] = a[same == 1, :4] + 0.3 * rng.normal(size=(int(same.sum()), 4))
a_train, a_test, b_train, b_test, y_train, y_test = train_test_split(a, b, same, test_size=0.25,
                                                                     random_state=0)

in_a = keras.Input(shape=(8,), name="left")
in_b = keras.Input(shape=(8,), name="right")
enc_a = keras.layers.Dense(16, activation="tanh")(in_a)
enc_b = keras.layers.Dense(16, activation="tanh")(in_b)
diff = keras.layers.Subtract()([enc_a, enc_b])
prod = keras.layers.Multiply()([enc_a, enc_b])
h = keras.layers.Concatenate()([diff, prod])
h = keras.layers.Dense(16, activation="relu")(h)
out = keras.layers.Dense(1, activation="sigmoid")(h)
model = keras.Model([in_a, in_b], out)
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit([a_train, b_train], y_train, epochs=15, batch_size=64, verbose=0)
test_loss, test_acc = model.evaluate([a_test, b_test], y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "accuracy": history.history["accuracy"][-1],
           "test_loss": test_loss, "test_accuracy": test_acc, "n_params": model.count_params(),
           "n_layers": len(model.layers)}
print(results)
