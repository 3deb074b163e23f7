"""validation_data tuple, reading the best epoch from History, predict + argmax."""
import os

import numpy as np
import keras
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_iris(return_X_y=True)
x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=1, stratify=y)
scaler = StandardScaler().fit(x_train)
x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)

model = keras.Sequential([
    keras.Input(shape=(4,)),
    keras.layers.Dense(10, activation="relu"),
    keras.layers.Dense(10, activation="relu"),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=40, batch_size=8, verbose=0)
pred = np.argmax(model.predict(x_val, verbose=0), axis=1)
results = {"loss": history.history["loss"][-1], "best_val_accuracy": max(history.history["val_accuracy"]),
           "val_loss": history.history["val_loss"][-1], "predict_accuracy": float(np.mean(pred == y_val))}
print(results)
