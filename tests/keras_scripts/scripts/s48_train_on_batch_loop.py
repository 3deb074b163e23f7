"""An older tutorial's hand-written loop: shuffle, train_on_batch per batch, test_on_batch per
epoch; then predict_on_batch and predict(batch_size=...)."""
import os

import numpy as np
import keras
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

seed = int(os.environ.get("KSCRIPT_SEED", "0"))
keras.utils.set_random_seed(seed)

x, y = load_breast_cancer(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=6)
scaler = MinMaxScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = keras.Sequential([
    keras.Input(shape=(30,)),
    keras.layers.Dense(24, activation="relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.003), loss="binary_crossentropy",
              metrics=["accuracy"])

rng = np.random.default_rng(seed)
batch_size, epochs = 32, 12
train_losses, val_losses = [], []
for epoch in range(epochs):
    order = rng.permutation(len(x_train))
    batch_losses = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        loss, acc = model.train_on_batch(x_train[idx], y_train[idx])
        batch_losses.append(loss)
    train_losses.append(float(np.mean(batch_losses)))
    val_loss, val_acc = model.test_on_batch(x_test, y_test)
    val_losses.append(float(val_loss))
    print(f"epoch {epoch + 1}: loss {train_losses[-1]:.4f} val_loss {val_loss:.4f} val_acc {val_acc:.3f}")

probs_batch = model.predict_on_batch(x_test[:10])
probs = model.predict(x_test, batch_size=64, verbose=0)
results = {"loss": train_losses[-1], "val_loss": val_losses[-1], "test_accuracy": float(val_acc),
           "predict_accuracy": float(np.mean((probs[:, 0] > 0.5) == y_test)),
           "same_first_predictions": bool(np.allclose(np.asarray(probs_batch), probs[:10], atol=1e-5)),
           "probs_shape": list(probs.shape)}
print(results)
