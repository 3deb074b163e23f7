"""The README's program on generated regression data: Sequential, Dense relu, adam, mse."""
import os

import numpy as np
import keras
from sklearn.datasets import make_regression
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_regression(n_samples=1000, n_features=10, noise=10.0, random_state=0)
y = y / np.std(y)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

model = keras.Sequential([
    keras.layers.Dense(64, activation="relu", input_shape=(10,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer="adam", loss="mean_squared_error")
history = model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
test_mse = model.evaluate(x_test, y_test, verbose=0)
pred = model.predict(x_test[:5], verbose=0)
results = {"loss": history.history["loss"][-1], "test_mse": test_mse, "pred_shape": list(pred.shape)}
print(results)
