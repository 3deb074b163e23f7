"""Per-sample weights in fit (recent samples weigh more) on a regression task."""
import os

import numpy as np
import keras
from sklearn.datasets import make_regression
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_regression(n_samples=1000, n_features=6, noise=8.0, random_state=5)
y = y / np.std(y)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
weights = np.linspace(0.2, 2.0, len(y_train))

model = keras.Sequential([
    keras.Input(shape=(6,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer="adam", loss="mse", metrics=["mae"])
history = model.fit(x_train, y_train, sample_weight=weights, epochs=15, batch_size=32, verbose=0)
test_mse, test_mae = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_mse": test_mse, "test_mae": test_mae}
print(results)
