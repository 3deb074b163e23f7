"""model.save / keras.models.load_model and save_weights / load_weights round trips."""
import os

import numpy as np
import keras
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_iris(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)


def build():
    model = keras.Sequential([
        keras.Input(shape=(4,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


model = build()
history = model.fit(x_train, y_train, epochs=30, batch_size=16, verbose=0)
model.save("iris_model.keras")
restored = keras.models.load_model("iris_model.keras")
same_predictions = bool(np.allclose(model.predict(x_test, verbose=0), restored.predict(x_test, verbose=0),
                                    atol=1e-6))
model.save_weights("iris.weights.h5")
fresh = build()
fresh.load_weights("iris.weights.h5")
same_after_weights = bool(np.allclose(model.predict(x_test, verbose=0), fresh.predict(x_test, verbose=0),
                                      atol=1e-6))
test_loss, test_acc = restored.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_accuracy": test_acc,
           "same_predictions": same_predictions, "same_after_weights": same_after_weights}
print(results)
