"""Functional model with two named inputs merged by keras.layers.concatenate; fit and predict
with a list of arrays."""
import os

import numpy as np
import keras
from sklearn.datasets import make_friedman1
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_friedman1(n_samples=1500, n_features=9, noise=0.5, random_state=17)
y = (y - y.mean()) / y.std()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
# the "wide" path sees 5 features, the "deep" path 6 (two shared)
wide_train, deep_train = x_train[:, :5], x_train[:, 3:]
wide_test, deep_test = x_test[:, :5], x_test[:, 3:]

input_wide = keras.Input(shape=(5,), name="wide_input")
input_deep = keras.Input(shape=(6,), name="deep_input")
hidden1 = keras.layers.Dense(30, activation="relu")(input_deep)
hidden2 = keras.layers.Dense(30, activation="relu")(hidden1)
concat = keras.layers.concatenate([input_wide, hidden2])
output = keras.layers.Dense(1, name="output")(concat)
model = keras.Model(inputs=[input_wide, input_deep], outputs=[output])

model.compile(loss="mse", optimizer=keras.optimizers.Adam(learning_rate=1e-3), metrics=["mae"])
history = model.fit([wide_train, deep_train], y_train, epochs=15, batch_size=32,
                    validation_data=([wide_test, deep_test], y_test), verbose=0)
test_mse, test_mae = model.evaluate([wide_test, deep_test], y_test, verbose=0)
pred = model.predict([wide_test[:3], deep_test[:3]], verbose=0)
results = {"loss": history.history["loss"][-1], "val_loss": history.history["val_loss"][-1],
           "test_mse": test_mse, "test_mae": test_mae, "pred_shape": list(pred.shape),
           "n_params": model.count_params(), "n_layers": len(model.layers)}
print(results)
