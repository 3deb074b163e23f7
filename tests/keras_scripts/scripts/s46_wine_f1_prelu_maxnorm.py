"""One-hot wine labels, Dense with kernel_constraint=MaxNorm(3), PReLU activations, Dropout,
F1Score(average='macro') and 'accuracy' metrics."""
import os

import keras
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_wine(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=8, stratify=y)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
y_train, y_test = keras.utils.to_categorical(y_train), keras.utils.to_categorical(y_test)

model = keras.Sequential([
    keras.Input(shape=(13,)),
    keras.layers.Dense(32, kernel_constraint=keras.constraints.MaxNorm(3)),
    keras.layers.PReLU(),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(16, kernel_constraint=keras.constraints.MaxNorm(3)),
    keras.layers.PReLU(),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer="adam", loss="categorical_crossentropy",
              metrics=["accuracy", keras.metrics.F1Score(average="macro", name="f1")])
history = model.fit(x_train, y_train, epochs=25, batch_size=16, verbose=0)
scores = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
results = {"loss": history.history["loss"][-1], "train_f1": history.history["f1"][-1],
           "test_loss": scores["loss"], "test_accuracy": scores["accuracy"], "test_f1": scores["f1"],
           "n_params": model.count_params()}
print(results)
