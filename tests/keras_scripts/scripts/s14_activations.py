"""Activations beyond relu: elu, gelu, swish, leaky_relu, softplus."""
import os

import keras
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_classification(n_samples=1500, n_features=20, n_informative=10, n_classes=4,
                           n_clusters_per_class=1, random_state=3)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(20,)),
    keras.layers.Dense(64, activation="elu"),
    keras.layers.Dense(64, activation="gelu"),
    keras.layers.Dense(32, activation="swish"),
    keras.layers.Dense(32, activation="leaky_relu"),
    keras.layers.Dense(16, activation="softplus"),
    keras.layers.Dense(4, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_accuracy": test_acc}
print(results)
