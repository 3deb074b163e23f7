"""Regression with loss='mae', optimizer='rmsprop' and a RootMeanSquaredError metric object."""
import os

import keras
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_diabetes(return_X_y=True)
y = (y - y.mean()) / y.std()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = keras.Sequential([
    keras.Input(shape=(10,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer="rmsprop", loss="mae", metrics=[keras.metrics.RootMeanSquaredError()])
history = model.fit(x_train, y_train, epochs=20, batch_size=16, verbose=0)
test_mae, test_rmse = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1],
           "root_mean_squared_error": history.history["root_mean_squared_error"][-1],
           "test_mae": test_mae, "test_rmse": test_rmse}
print(results)
