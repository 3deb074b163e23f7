"""Weight regularization: keras.regularizers.l2 and L1L2 on Dense kernels and biases."""
import os

import keras
from keras import regularizers
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)

model = keras.Sequential([
    keras.Input(shape=(64,)),
    keras.layers.Dense(64, activation="relu", kernel_regularizer=regularizers.l2(0.001)),
    keras.layers.Dense(64, activation="relu",
                       kernel_regularizer=regularizers.L1L2(l1=1e-5, l2=1e-4),
                       bias_regularizer=regularizers.L2(1e-4)),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_accuracy": test_acc}
print(results)
