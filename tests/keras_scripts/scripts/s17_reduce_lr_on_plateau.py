"""ReduceLROnPlateau on val_loss for a regression model."""
import os

import numpy as np
import keras
from sklearn.datasets import make_friedman1
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_friedman1(n_samples=1200, n_features=10, noise=0.5, random_state=0)
y = (y - y.mean()) / y.std()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(10,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
reduce_lr = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-4)
history = model.fit(x_train, y_train, epochs=20, batch_size=32, validation_split=0.2,
                    callbacks=[reduce_lr], verbose=0)
final_lr = float(np.array(model.optimizer.learning_rate))
results = {"loss": history.history["loss"][-1], "min_val_loss": min(history.history["val_loss"]),
           "test_mse": model.evaluate(x_test, y_test, verbose=0), "final_lr_below_initial": final_lr < 0.01}
print(results)
