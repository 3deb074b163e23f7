"""Regularized and constrained normalization weights: BatchNormalization with gamma/beta
regularizers, LayerNormalization with a gamma constraint, PReLU with an alpha regularizer."""
import os

import keras
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = load_breast_cancer(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = keras.Sequential([
    keras.Input(shape=(30,)),
    keras.layers.Dense(32),
    keras.layers.BatchNormalization(gamma_regularizer=keras.regularizers.L2(1e-2),
                                    beta_regularizer=keras.regularizers.L1(1e-3)),
    keras.layers.PReLU(alpha_regularizer=keras.regularizers.L2(1e-3)),
    keras.layers.Dense(16),
    keras.layers.LayerNormalization(gamma_constraint=keras.constraints.MaxNorm(1.5)),
    keras.layers.Activation("relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=20, batch_size=32, validation_split=0.1, verbose=0)
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
results = {"loss": history.history["loss"][-1], "val_accuracy": history.history["val_accuracy"][-1],
           "test_loss": test_loss, "test_accuracy": test_acc, "n_params": model.count_params(),
           "n_non_trainable": len(model.non_trainable_weights)}
print(results)
