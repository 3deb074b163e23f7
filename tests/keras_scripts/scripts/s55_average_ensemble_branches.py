"""An in-model ensemble: three differently shaped branches on one input whose predictions are
averaged with keras.layers.Average(); trained end to end on a regression task."""
import os

import keras
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_diabetes(return_X_y=True)
y = (y - y.mean()) / y.std()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

inputs = keras.Input(shape=(10,))
branches = []
for units, act in [(32, "relu"), (16, "tanh"), (8, "elu")]:
    h = keras.layers.Dense(units, activation=act)(inputs)
    branches.append(keras.layers.Dense(1)(h))
outputs = keras.layers.Average()(branches)
model = keras.Model(inputs, outputs)
model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse", metrics=["mae"])
history = model.fit(x_train, y_train, epochs=40, batch_size=32, verbose=0)
test_mse, test_mae = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_mse": test_mse, "test_mae": test_mae,
           "n_params": model.count_params(), "n_layers": len(model.layers)}
print(results)
