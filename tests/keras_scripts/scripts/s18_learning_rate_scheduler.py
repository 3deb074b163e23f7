"""LearningRateScheduler with a step-decay function of (epoch, lr)."""
import os

import numpy as np
import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)


def scheduler(epoch, lr):
    if epoch < 4:
        return lr
    return float(lr * np.exp(-0.2))


model = keras.Sequential([
    keras.Input(shape=(64,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
callback = keras.callbacks.LearningRateScheduler(scheduler)
history = model.fit(x_train, y_train, epochs=10, batch_size=32, callbacks=[callback], verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
final_lr = float(np.array(model.optimizer.learning_rate))
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_accuracy": test_acc,
           "final_lr": final_lr}
print(results)
