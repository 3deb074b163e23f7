"""A residual MLP in the functional API: Dense blocks with BatchNormalization whose outputs are
summed with keras.layers.Add(); model.summary() and count_params()."""
import os

import keras
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_classification(n_samples=2000, n_features=20, n_informative=10, n_classes=4,
                           random_state=23)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)


def residual_block(h, units):
    shortcut = h
    h = keras.layers.Dense(units, activation="relu")(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dense(units)(h)
    h = keras.layers.Add()([shortcut, h])
    return keras.layers.Activation("relu")(h)


inputs = keras.Input(shape=(20,))
h = keras.layers.Dense(32, activation="relu")(inputs)
h = residual_block(h, 32)
h = residual_block(h, 32)
outputs = keras.layers.Dense(4, activation="softmax")(h)
model = keras.Model(inputs, outputs, name="resmlp")
model.summary()
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=10, batch_size=32, validation_split=0.1, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "val_accuracy": history.history["val_accuracy"][-1],
           "test_loss": test_loss, "test_accuracy": test_acc, "n_params": model.count_params(),
           "n_trainable_weights": len(model.trainable_weights), "n_layers": len(model.layers)}
print(results)
