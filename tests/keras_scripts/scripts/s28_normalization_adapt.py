"""A Normalization layer adapted to the training data (the TF regression tutorial's pattern)."""
import os

import numpy as np
import keras
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_diabetes(return_X_y=True, scaled=False)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

normalizer = keras.layers.Normalization(axis=-1)
normalizer.adapt(np.array(x_train))
model = keras.Sequential([
    keras.Input(shape=(10,)),
    normalizer,
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(loss="mean_absolute_error", optimizer=keras.optimizers.Adam(0.01))
history = model.fit(x_train, y_train, validation_split=0.2, epochs=30, verbose=0)
results = {"loss": history.history["loss"][-1], "val_loss": history.history["val_loss"][-1],
           "test_mae": model.evaluate(x_test, y_test, verbose=0)}
print(results)
