"""Count regression: a keras.utils.PyDataset feeding fit, Poisson loss with an exponential output,
RMSprop with an InverseTimeDecay schedule."""
import os

import numpy as np
import keras

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

rng = np.random.RandomState(3)
x = rng.normal(size=(2000, 6)).astype("float32")
rate = np.exp(0.4 * x[:, 0] - 0.3 * x[:, 1] + 0.2 * x[:, 2] * x[:, 3] + 0.5)
y = rng.poisson(rate).astype("float32")
x_train, y_train, x_test, y_test = x[:1600], y[:1600], x[1600:], y[1600:]


class CountData(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size=32, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return int(np.ceil(len(self.x) / self.batch_size))

    def __getitem__(self, idx):
        lo = idx * self.batch_size
        hi = min(lo + self.batch_size, len(self.x))
        return self.x[lo:hi], self.y[lo:hi]


train_data = CountData(x_train, y_train, batch_size=32)
schedule = keras.optimizers.schedules.InverseTimeDecay(initial_learning_rate=0.005, decay_steps=50,
                                                       decay_rate=0.5)
model = keras.Sequential([
    keras.Input(shape=(6,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(1, activation="exponential"),
])
model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=schedule), loss="poisson", metrics=["mae"])
history = model.fit(train_data, epochs=10, verbose=0)
test_loss, test_mae = model.evaluate(x_test, y_test, verbose=0)
mean_pred = float(model.predict(x_test, verbose=0).mean())
results = {"loss": history.history["loss"][-1], "test_poisson": test_loss, "test_mae": test_mae,
           "mean_prediction": mean_pred, "batches_per_epoch": len(train_data)}
print(results)
