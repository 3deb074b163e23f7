"""A custom loss function written with keras.ops."""
import os

import numpy as np
import keras
from keras import ops
from sklearn.datasets import make_regression
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_regression(n_samples=800, n_features=5, noise=5.0, random_state=7)
y = y / np.std(y)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)


def weighted_squared_error(y_true, y_pred):
    err = y_true - y_pred
    return ops.mean(ops.where(err > 0, 2.0 * ops.square(err), ops.square(err)), axis=-1)


model = keras.Sequential([
    keras.Input(shape=(5,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer="adam", loss=weighted_squared_error, metrics=["mse"])
history = model.fit(x_train, y_train.reshape(-1, 1), epochs=15, batch_size=32, verbose=0)
test_loss, test_mse = model.evaluate(x_test, y_test.reshape(-1, 1), verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_mse": test_mse}
print(results)
