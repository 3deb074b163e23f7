"""Multi-class with 'nadam', a SparseCategoricalCrossentropy loss object and metric object."""
import os

import keras
from sklearn.datasets import make_blobs
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_blobs(n_samples=1500, centers=5, n_features=8, cluster_std=3.0, random_state=6)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(8,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(5),
])
model.compile(optimizer="nadam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
history = model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "acc": history.history["acc"][-1],
           "test_loss": test_loss, "test_accuracy": test_acc}
print(results)
