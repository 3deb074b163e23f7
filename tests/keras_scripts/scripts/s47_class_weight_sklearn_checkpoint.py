"""Imbalanced 3-class data: class_weight from sklearn's compute_class_weight, EarlyStopping on
val_loss and ModelCheckpoint(save_weights_only) to a .weights.h5 file, reloaded with load_weights."""
import os

import numpy as np
import keras
from sklearn.datasets import make_classification
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_classification(n_samples=2500, n_features=12, n_informative=7, n_classes=3,
                           weights=[0.75, 0.18, 0.07], random_state=14)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

weights = compute_class_weight(class_weight="balanced", classes=np.unique(y_train), y=y_train)
class_weight = dict(enumerate(weights))

model = keras.Sequential([
    keras.Input(shape=(12,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(3, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
callbacks = [
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True),
    keras.callbacks.ModelCheckpoint("best.weights.h5", monitor="val_loss", save_best_only=True,
                                    save_weights_only=True),
]
history = model.fit(x_train, y_train, epochs=30, batch_size=64, validation_split=0.2,
                    class_weight=class_weight, callbacks=callbacks, verbose=0)
model.load_weights("best.weights.h5")
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
y_pred = model.predict(x_test, verbose=0).argmax(axis=1)
results = {"best_val_loss": min(history.history["val_loss"]), "test_loss": test_loss, "test_accuracy": test_acc,
           "balanced_acc": balanced_accuracy_score(y_test, y_pred),
           "checkpoint_written": os.path.exists("best.weights.h5")}
print(results)
