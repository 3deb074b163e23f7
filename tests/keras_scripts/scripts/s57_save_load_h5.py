"""The legacy HDF5 format of countless tutorials: model.save("model.h5"), keras.models.load_model,
load_weights from the .h5 model file, and save_weights refusing a plain .h5 name."""
import os

import numpy as np
import keras
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_wine(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train).astype("float32"), scaler.transform(x_test).astype("float32")


def build():
    model = keras.Sequential([
        keras.Input(shape=(13,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


model = build()
history = model.fit(x_train, y_train, epochs=20, batch_size=16, verbose=0)
model.save("wine_model.h5")
restored = keras.models.load_model("wine_model.h5")
same_predictions = bool(np.allclose(model.predict(x_test, verbose=0), restored.predict(x_test, verbose=0),
                                    atol=1e-6))
fresh = build()
fresh.load_weights("wine_model.h5")
same_after_weights = bool(np.allclose(model.predict(x_test, verbose=0), fresh.predict(x_test, verbose=0),
                                      atol=1e-6))
try:
    model.save_weights("wine.h5")
    save_weights_h5 = "saved"
except ValueError as e:
    save_weights_h5 = str(e)
test_loss, test_acc = restored.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_accuracy": test_acc,
           "same_predictions": same_predictions, "same_after_weights": same_after_weights,
           "restored_iterations": int(np.asarray(restored.optimizer.iterations)),
           "restored_learning_rate": float(np.asarray(restored.optimizer.learning_rate)),
           "save_weights_h5": save_weights_h5}
print(results)
