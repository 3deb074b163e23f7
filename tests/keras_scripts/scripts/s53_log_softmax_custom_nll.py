"""A classifier whose last layer outputs log-probabilities (activation='log_softmax') trained
with a custom negative log-likelihood written with keras.ops; accuracy from the arg-max."""
import os

import numpy as np
import keras
from keras import ops
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_wine(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
y_train_1h = keras.utils.to_categorical(y_train, 3)
y_test_1h = keras.utils.to_categorical(y_test, 3)


def nll(y_true, log_probs):
    return -ops.mean(ops.sum(y_true * log_probs, axis=-1))


model = keras.Sequential([
    keras.Input(shape=(13,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(3, activation="log_softmax"),
])
model.compile(optimizer=keras.optimizers.Adam(5e-3), loss=nll)
history = model.fit(x_train, y_train_1h, epochs=30, batch_size=16, verbose=0)
test_loss = model.evaluate(x_test, y_test_1h, verbose=0)
log_p = model.predict(x_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss,
           "test_accuracy": float(np.mean(np.argmax(log_p, axis=1) == y_test)),
           "prob_sum_err": float(np.max(np.abs(np.exp(log_p).sum(axis=1) - 1.0)) < 1e-4)}
print(results)
