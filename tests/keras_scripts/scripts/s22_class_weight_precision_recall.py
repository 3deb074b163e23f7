"""Imbalanced binary data: class_weight, Precision and Recall metric objects."""
import os

import keras
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_classification(n_samples=3000, n_features=15, n_informative=6, weights=[0.9, 0.1],
                           flip_y=0.01, random_state=4)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

neg, pos = (y_train == 0).sum(), (y_train == 1).sum()
class_weight = {0: (1 / neg) * len(y_train) / 2.0, 1: (1 / pos) * len(y_train) / 2.0}

model = keras.Sequential([
    keras.Input(shape=(15,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="binary_crossentropy",
              metrics=[keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall")])
history = model.fit(x_train, y_train, epochs=10, batch_size=64, class_weight=class_weight, verbose=0)
scores = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
results = {"loss": history.history["loss"][-1], "test_loss": scores["loss"],
           "test_precision": scores["precision"], "test_recall": scores["recall"]}
print(results)
