"""optimizer='sgd' by name, predict probabilities, scored with scikit-learn."""
import os

import numpy as np
import keras
from sklearn.datasets import load_wine
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_wine(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=2, stratify=y)
scaler = MinMaxScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = keras.Sequential([
    keras.Input(shape=(13,)),
    keras.layers.Dense(32, activation="sigmoid"),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=60, batch_size=8, verbose=0)
probs = model.predict(x_test, verbose=0)
results = {"loss": history.history["loss"][-1],
           "test_accuracy": float(accuracy_score(y_test, probs.argmax(axis=1))),
           "prob_sum": float(np.mean(probs.sum(axis=1)))}
print(results)
