"""BinaryFocalCrossentropy loss with metrics=['accuracy', AUC(name='auc'), Precision()], then
thresholded predictions scored with scikit-learn."""
import os

import keras
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

data = load_breast_cancer()
x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.2, random_state=11,
                                                    stratify=data.target)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

model = keras.Sequential([
    keras.Input(shape=(30,)),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dense(8, activation="relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
              loss=keras.losses.BinaryFocalCrossentropy(gamma=2.0),
              metrics=["accuracy", keras.metrics.AUC(name="auc"), keras.metrics.Precision()])
history = model.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)
test_loss, test_acc, test_auc, test_precision = model.evaluate(x_test, y_test, verbose=0)
y_pred = (model.predict(x_test, verbose=0) > 0.5).astype("int32").ravel()
results = {"loss": history.history["loss"][-1], "train_auc": history.history["auc"][-1],
           "test_loss": test_loss, "test_accuracy": test_acc, "test_auc": test_auc,
           "test_precision": test_precision, "sklearn_f1": f1_score(y_test, y_pred),
           "history_keys": sorted(history.history)}
print(results)
