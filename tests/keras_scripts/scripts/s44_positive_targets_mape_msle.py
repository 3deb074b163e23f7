"""Comparing two losses for positive targets on one architecture: get_weights once, set_weights
before each run so both start from the same weights; loss='mape' and loss='msle'."""
import os

import numpy as np
import keras
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_diabetes(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=5)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = keras.Sequential([
    keras.Input(shape=(10,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(1, activation="softplus"),
])
initial_weights = model.get_weights()

results = {"n_weight_arrays": len(initial_weights)}
for loss in ["mape", "msle"]:
    model.set_weights(initial_weights)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.02), loss=loss, metrics=["mae"])
    history = model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    test_loss, test_mae = model.evaluate(x_test, y_test, verbose=0)
    results[f"{loss}_loss"] = history.history["loss"][-1]
    results[f"{loss}_test_loss"] = test_loss
    results[f"{loss}_test_mae"] = test_mae
model.set_weights(initial_weights)
results["restored"] = all(np.array_equal(a, b) for a, b in zip(initial_weights, model.get_weights()))
print(results)
