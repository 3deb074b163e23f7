"""ModelCheckpoint(save_best_only=True) to a .keras file, then load_model and evaluate."""
import os

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(64,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
checkpoint = keras.callbacks.ModelCheckpoint("best_model.keras", monitor="val_accuracy",
                                             save_best_only=True, mode="max")
history = model.fit(x_train, y_train, epochs=8, validation_split=0.2, callbacks=[checkpoint], verbose=0)
best = keras.models.load_model("best_model.keras")
test_loss, test_acc = best.evaluate(x_test, y_test, verbose=0)
results = {"best_val_accuracy": max(history.history["val_accuracy"]), "test_loss": test_loss,
           "test_accuracy": test_acc}
print(results)
