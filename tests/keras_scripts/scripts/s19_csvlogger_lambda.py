"""CSVLogger and LambdaCallback recording per-epoch logs; the CSV file read back."""
import csv
import os

import keras
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_breast_cancer(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = keras.Sequential([
    keras.Input(shape=(30,)),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
epoch_losses = []
log_cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch_losses.append(logs["loss"]))
csv_cb = keras.callbacks.CSVLogger("training.log")
model.fit(x_train, y_train, epochs=8, batch_size=32, validation_data=(x_test, y_test),
          callbacks=[csv_cb, log_cb], verbose=0)
with open("training.log") as f:
    rows = list(csv.DictReader(f))
results = {"csv_rows": len(rows), "csv_final_loss": float(rows[-1]["loss"]),
           "csv_final_val_accuracy": float(rows[-1]["val_accuracy"]),
           "lambda_final_loss": epoch_losses[-1], "lambda_epochs": len(epoch_losses)}
print(results)
