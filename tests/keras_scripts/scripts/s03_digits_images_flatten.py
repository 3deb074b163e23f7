"""8x8 digit images: Flatten, Dropout, to_categorical, categorical_crossentropy."""
import os

import numpy as np
import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

digits = load_digits()
images = digits.images.astype("float32") / 16.0
labels = keras.utils.to_categorical(digits.target, num_classes=10)
x_train, x_test, y_train, y_test = train_test_split(images, labels, test_size=0.25, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(8, 8)),
    keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
loss, acc = model.evaluate(x_test, y_test, verbose=0)
pred = model.predict(x_test, verbose=0)
agree = float(np.mean(np.argmax(pred, axis=1) == np.argmax(y_test, axis=1)))
results = {"loss": history.history["loss"][-1], "test_loss": loss, "test_accuracy": acc,
           "predict_accuracy": agree}
print(results)
