"""Multi-output regression trained on direction only: CosineSimilarity loss, AdamW(weight_decay)
with a CosineDecay schedule that warms up first."""
import os

import numpy as np
import keras
from sklearn.datasets import make_regression
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_regression(n_samples=1000, n_features=12, n_targets=3, noise=10.0, random_state=9)
y = y / np.linalg.norm(y, axis=1, keepdims=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)

batch_size, epochs = 32, 15
total_steps = epochs * int(np.ceil(len(x_train) / batch_size))
lr = keras.optimizers.schedules.CosineDecay(initial_learning_rate=0.0, decay_steps=total_steps - 50, alpha=0.1,
                                            warmup_target=2e-3, warmup_steps=50)
model = keras.Sequential([
    keras.Input(shape=(12,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(3),
])
model.compile(optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=1e-3),
              loss=keras.losses.CosineSimilarity(axis=-1), metrics=["mse"])
history = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
test_loss, test_mse = model.evaluate(x_test, y_test, verbose=0)
pred = model.predict(x_test, verbose=0)
cos = np.sum(pred * y_test, axis=1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(y_test, axis=1))
results = {"loss": history.history["loss"][-1], "first_loss": history.history["loss"][0],
           "test_cosine_loss": test_loss, "test_mse": test_mse, "mean_cosine": float(cos.mean()),
           "final_learning_rate": float(model.optimizer.learning_rate)}
print(results)
