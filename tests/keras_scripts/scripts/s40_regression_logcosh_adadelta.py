"""Regression with outliers: GaussianNoise on the inputs, ELU layers, LogCosh loss object,
Adadelta(learning_rate=1.0), a MeanAbsoluteError metric object."""
import os

import numpy as np
import keras
from sklearn.datasets import make_regression
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_regression(n_samples=1200, n_features=8, n_informative=6, noise=5.0, random_state=21)
rng = np.random.RandomState(0)
outliers = rng.choice(len(y), size=40, replace=False)
y[outliers] += rng.normal(0, 5 * y.std(), size=40)
y = (y - y.mean()) / y.std()
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=2)

model = keras.Sequential([
    keras.Input(shape=(8,)),
    keras.layers.GaussianNoise(0.1),
    keras.layers.Dense(32),
    keras.layers.ELU(),
    keras.layers.Dense(16),
    keras.layers.ELU(alpha=0.5),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95), loss=keras.losses.LogCosh(),
              metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
history = model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
test_loss, test_mae = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "train_mae": history.history["mae"][-1],
           "test_logcosh": test_loss, "test_mae": test_mae}
print(results)
