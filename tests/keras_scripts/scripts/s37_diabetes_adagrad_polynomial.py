"""Regression with Adagrad and a PolynomialDecay learning-rate schedule object; the learning rate
and step count read back from the optimizer after training."""
import os

import numpy as np
import keras
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_diabetes(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=7)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
y_mean, y_std = y_train.mean(), y_train.std()
y_train_s, y_test_s = (y_train - y_mean) / y_std, (y_test - y_mean) / y_std

epochs, batch_size = 40, 32
steps_per_epoch = int(np.ceil(len(x_train) / batch_size))
lr_schedule = keras.optimizers.schedules.PolynomialDecay(
    initial_learning_rate=0.05, decay_steps=epochs * steps_per_epoch, end_learning_rate=0.005, power=2.0)
model = keras.Sequential([
    keras.Input(shape=(10,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.Adagrad(learning_rate=lr_schedule), loss="mse", metrics=["mae"])
history = model.fit(x_train, y_train_s, epochs=epochs, batch_size=batch_size, verbose=0)
test_mse, test_mae = model.evaluate(x_test, y_test_s, verbose=0)
pred = model.predict(x_test, verbose=0).flatten() * y_std + y_mean
results = {"loss": history.history["loss"][-1], "test_mse": test_mse, "test_mae": test_mae,
           "test_mae_original_units": float(np.mean(np.abs(pred - y_test))),
           "final_learning_rate": float(model.optimizer.learning_rate),
           "iterations": int(model.optimizer.iterations)}
print(results)
