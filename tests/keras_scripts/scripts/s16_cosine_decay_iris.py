"""CosineDecay schedule with Adam on iris; one-hot labels from to_categorical."""
import os

import keras
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_iris(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
y_train_oh, y_test_oh = keras.utils.to_categorical(y_train, 3), keras.utils.to_categorical(y_test, 3)

epochs, batch_size = 30, 16
steps = epochs * ((len(x_train) + batch_size - 1) // batch_size)
schedule = keras.optimizers.schedules.CosineDecay(initial_learning_rate=0.01, decay_steps=steps)
model = keras.Sequential([
    keras.Input(shape=(4,)),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule),
              loss="categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train_oh, epochs=epochs, batch_size=batch_size, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test_oh, verbose=0)
results = {"loss": history.history["loss"][-1], "test_loss": test_loss, "test_accuracy": test_acc}
print(results)
