"""Regression reported with several metrics: 'mae', 'mse', MeanAbsolutePercentageError, R2Score."""
import os

import numpy as np
import keras
from sklearn.datasets import make_friedman2
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_friedman2(n_samples=1000, noise=10.0, random_state=0)
y = (y / np.std(y)).astype("float32") + 1.0
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = keras.Sequential([
    keras.Input(shape=(4,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer="adam", loss="mse",
              metrics=["mae", "mse", keras.metrics.MeanAbsolutePercentageError(name="mape"),
                       keras.metrics.R2Score(name="r2")])
history = model.fit(x_train, y_train.reshape(-1, 1), epochs=15, batch_size=32, verbose=0)
scores = model.evaluate(x_test, y_test.reshape(-1, 1), verbose=0, return_dict=True)
results = {"loss": history.history["loss"][-1], "test_mae": scores["mae"], "test_mse": scores["mse"],
           "test_mape": scores["mape"], "test_r2": scores["r2"]}
print(results)
