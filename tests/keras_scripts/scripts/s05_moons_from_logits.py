"""Binary classification on logits: Dense(1) without activation, BinaryCrossentropy(from_logits=True)."""
import os

import numpy as np
import keras
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_moons(n_samples=1000, noise=0.2, random_state=0)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(2,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01),
              loss=keras.losses.BinaryCrossentropy(from_logits=True))
history = model.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)
logits = model.predict(x_test, verbose=0).ravel()
test_acc = float(np.mean((logits > 0).astype(int) == y_test))
results = {"loss": history.history["loss"][-1], "test_loss": model.evaluate(x_test, y_test, verbose=0),
           "test_accuracy": test_acc}
print(results)
