"""A two-headed functional model (a regression head and a classification head on a shared
trunk) compiled with per-output losses, loss weights and metrics given as dicts keyed by the
output names; fit and evaluate with dicts of targets."""
import os

import numpy as np
import keras
from sklearn.datasets import make_regression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_regression(n_samples=2000, n_features=12, n_informative=8, noise=5.0, random_state=31)
y = (y - y.mean()) / y.std()
label = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))  # three classes: low / middle / high
x_train, x_test, y_train, y_test, l_train, l_test = train_test_split(x, y, label, test_size=0.2,
                                                                     random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

inputs = keras.Input(shape=(12,), name="features")
h = keras.layers.Dense(64, activation="relu")(inputs)
h = keras.layers.Dense(32, activation="relu")(h)
value = keras.layers.Dense(1, name="value")(h)
band = keras.layers.Dense(3, activation="softmax", name="band")(h)
model = keras.Model(inputs, {"value": value, "band": band})
model.compile(optimizer=keras.optimizers.Adam(2e-3),
              loss={"value": "mse", "band": "sparse_categorical_crossentropy"},
              loss_weights={"value": 1.0, "band": 0.5},
              metrics={"value": ["mae"], "band": ["accuracy"]})
history = model.fit(x_train, {"value": y_train, "band": l_train}, epochs=12, batch_size=32, verbose=0)
scores = model.evaluate(x_test, {"value": y_test, "band": l_test}, verbose=0, return_dict=True)
pred = model.predict(x_test[:5], verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": scores["loss"],
           "test_value_mae": scores["value_mae"], "test_band_accuracy": scores["band_accuracy"],
           "pred_keys": sorted(pred), "value_shape": list(pred["value"].shape),
           "n_params": model.count_params()}
print(results)
