"""Two inputs and two outputs with losses, loss weights and targets given as lists (Keras'
positional form); the history's per-output loss keys are read back."""
import os

import numpy as np
import keras
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_classification(n_samples=2400, n_features=14, n_informative=8, random_state=41)
aux = x[:, :3].sum(axis=1, keepdims=True) + 0.1 * np.random.default_rng(0).normal(size=(2400, 1))
x_train, x_test, y_train, y_test, a_train, a_test = train_test_split(x, y, aux, test_size=0.25,
                                                                     random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
num_train, cat_train = x_train[:, :9], x_train[:, 9:]
num_test, cat_test = x_test[:, :9], x_test[:, 9:]

in_num = keras.Input(shape=(9,), name="numeric")
in_cat = keras.Input(shape=(5,), name="other")
h = keras.layers.concatenate([keras.layers.Dense(24, activation="relu")(in_num),
                              keras.layers.Dense(8, activation="relu")(in_cat)])
h = keras.layers.Dense(24, activation="relu")(h)
out_cls = keras.layers.Dense(1, activation="sigmoid", name="cls")(h)
out_aux = keras.layers.Dense(1, name="aux")(h)
model = keras.Model([in_num, in_cat], [out_cls, out_aux])
model.compile(optimizer="adam", loss=["binary_crossentropy", "mse"], loss_weights=[1.0, 0.2])
history = model.fit([num_train, cat_train], [y_train, a_train], epochs=12, batch_size=32, verbose=0)
scores = model.evaluate([num_test, cat_test], [y_test, a_test], verbose=0)
p_cls, p_aux = model.predict([num_test, cat_test], verbose=0)
results = {"loss": history.history["loss"][-1], "cls_loss": history.history["cls_loss"][-1],
           "aux_loss": history.history["aux_loss"][-1], "test_loss": scores[0],
           "test_accuracy": float(np.mean((p_cls[:, 0] > 0.5) == y_test)),
           "n_history_keys": len(history.history)}
print(results)
