"""Wide & deep regression: functional model with a Concatenate skip connection."""
import os

import numpy as np
import keras
from sklearn.datasets import make_regression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_regression(n_samples=2000, n_features=8, n_informative=6, noise=10.0, random_state=2)
y = np.sin(y / 100.0) + 0.1 * y / np.std(y)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

inputs = keras.Input(shape=(8,))
hidden1 = keras.layers.Dense(30, activation="relu")(inputs)
hidden2 = keras.layers.Dense(30, activation="relu")(hidden1)
concat = keras.layers.Concatenate()([inputs, hidden2])
output = keras.layers.Dense(1)(concat)
model = keras.Model(inputs=[inputs], outputs=[output])
model.compile(loss="mse", optimizer=keras.optimizers.Adam(learning_rate=1e-3))
history = model.fit(x_train, y_train, epochs=10, validation_data=(x_test, y_test), verbose=0)
results = {"loss": history.history["loss"][-1], "val_loss": history.history["val_loss"][-1],
           "test_mse": model.evaluate(x_test, y_test, verbose=0)}
print(results)
