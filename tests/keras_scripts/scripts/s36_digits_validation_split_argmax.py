"""A named Sequential with keras.Input, to_categorical labels, fit(validation_split, shuffle),
evaluate, predict(batch_size) + argmax, and the History keys."""
import os

import numpy as np
import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_digits(return_X_y=True)
x = x.astype("float32") / 16.0
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
y_train_cat = keras.utils.to_categorical(y_train, num_classes=10)
y_test_cat = keras.utils.to_categorical(y_test, num_classes=10)

model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(128, activation="relu", name="hidden_1"),
        keras.layers.Dense(64, activation="relu", name="hidden_2"),
        keras.layers.Dense(10, activation="softmax", name="output"),
    ],
    name="digits_classifier",
)
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train_cat, epochs=8, batch_size=32, validation_split=0.2, shuffle=True,
                    verbose=2)
test_loss, test_acc = model.evaluate(x_test, y_test_cat, verbose=0)
probs = model.predict(x_test, batch_size=128, verbose=0)
y_pred = np.argmax(probs, axis=1)
print(f"Test accuracy: {test_acc:.3f}")
results = {"loss": history.history["loss"][-1], "val_accuracy": history.history["val_accuracy"][-1],
           "test_loss": test_loss, "test_accuracy": test_acc,
           "argmax_accuracy": float(np.mean(y_pred == y_test)),
           "history_keys": sorted(history.history.keys()), "model_name": model.name,
           "layer_names": [layer.name for layer in model.layers], "probs_shape": list(probs.shape)}
print(results)
