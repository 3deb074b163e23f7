"""Binary classification: sigmoid output, binary_crossentropy, AUC metric object, return_dict."""
import os

import keras
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_breast_cancer(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = keras.Sequential([
    keras.Input(shape=(30,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer="adam", loss="binary_crossentropy",
              metrics=["accuracy", keras.metrics.AUC(name="auc")])
history = model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
scores = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
results = {"loss": history.history["loss"][-1], "train_auc": history.history["auc"][-1],
           "test_loss": scores["loss"], "test_accuracy": scores["accuracy"], "test_auc": scores["auc"]}
print(results)
