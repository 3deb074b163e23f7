"""SGD with momentum, clipnorm and a PiecewiseConstantDecay schedule on wine; evaluate with
return_dict=True."""
import os

import keras
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_wine(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=3, stratify=y)
scaler = StandardScaler()
x_train = scaler.fit_transform(x_train)
x_test = scaler.transform(x_test)

lr = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries=[40, 80], values=[0.05, 0.01, 0.002])
optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=0.9, clipnorm=1.0)
model = keras.Sequential([
    keras.Input(shape=(13,)),
    keras.layers.Dense(32, activation="tanh"),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=20, batch_size=16, verbose=0)
scores = model.evaluate(x_test, y_test, return_dict=True, verbose=0)
results = {"loss": history.history["loss"][-1], "first_loss": history.history["loss"][0],
           "test_loss": scores["loss"], "test_accuracy": scores["accuracy"],
           "final_learning_rate": float(model.optimizer.learning_rate), "score_keys": sorted(scores)}
print(results)
