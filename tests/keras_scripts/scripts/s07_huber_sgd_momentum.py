"""Regression with outliers: Huber loss object, SGD(momentum=0.9), metrics=['mae']."""
import os

import numpy as np
import keras
from sklearn.datasets import make_regression
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_regression(n_samples=800, n_features=8, noise=5.0, random_state=1)
y = y / np.std(y)
rng = np.random.default_rng(0)
outliers = rng.choice(len(y), size=40, replace=False)
y[outliers] += rng.normal(0, 5, size=40)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(8,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
              loss=keras.losses.Huber(delta=1.0), metrics=["mae"])
history = model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
test_loss, test_mae = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "mae": history.history["mae"][-1],
           "test_loss": test_loss, "test_mae": test_mae}
print(results)
