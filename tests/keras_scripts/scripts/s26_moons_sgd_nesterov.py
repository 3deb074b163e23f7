"""SGD with Nesterov momentum, tanh hidden layers (features the README lists)."""
import os

import numpy as np
import keras
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_moons(n_samples=1000, noise=0.25, random_state=2)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

model = keras.Sequential([
    keras.layers.Dense(16, activation="tanh", input_shape=(2,)),
    keras.layers.Dense(16, activation="tanh"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
              loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)
probs = model.predict(x_test, verbose=0)
test_acc = float(np.mean((probs[:, 0] > 0.5) == y_test))
results = {"loss": history.history["loss"][-1], "accuracy": history.history["accuracy"][-1],
           "test_accuracy": test_acc}
print(results)
