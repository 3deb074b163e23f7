"""Sequential.add, model.summary(), count_params, LeakyReLU and Dropout layers, 'adamax'."""
import os

import keras
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_classification(n_samples=2000, n_features=12, n_informative=8, n_classes=3,
                           random_state=8)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

model = keras.Sequential()
model.add(keras.Input(shape=(12,)))
model.add(keras.layers.Dense(48))
model.add(keras.layers.LeakyReLU(negative_slope=0.1))
model.add(keras.layers.Dropout(0.2))
model.add(keras.layers.Dense(3, activation="softmax"))
model.summary()
model.compile(optimizer="adamax", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_accuracy": test_acc,
           "n_params": model.count_params()}
print(results)
