"""RMSprop optimizer object and a BinaryCrossentropy loss object, BinaryAccuracy metric."""
import os

import keras
from sklearn.datasets import make_circles
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_circles(n_samples=1200, noise=0.08, factor=0.6, random_state=1)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(2,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.005),
              loss=keras.losses.BinaryCrossentropy(),
              metrics=[keras.metrics.BinaryAccuracy()])
history = model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "binary_accuracy": history.history["binary_accuracy"][-1],
           "test_loss": test_loss, "test_accuracy": test_acc}
print(results)
