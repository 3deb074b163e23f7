"""Distillation-style training: soft targets from a scikit-learn teacher, a Dense + Softmax layer
student trained with KLDivergence and the Lion optimizer."""
import os

import numpy as np
import keras
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

keras.utils.set_random_seed(int(os.environ.get("KSCRIPT_SEED", "0")))

x, y = make_classification(n_samples=1500, n_features=10, n_informative=6, n_classes=4,
                           n_clusters_per_class=1, random_state=12)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
scaler = StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
teacher = LogisticRegression(max_iter=1000).fit(x_train, y_train)
soft_train, soft_test = teacher.predict_proba(x_train), teacher.predict_proba(x_test)

student = keras.Sequential([
    keras.Input(shape=(10,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(4),
    keras.layers.Softmax(),
])
student.compile(optimizer=keras.optimizers.Lion(learning_rate=3e-4), loss=keras.losses.KLDivergence(),
                metrics=[keras.metrics.CategoricalAccuracy(name="agreement_acc")])
history = student.fit(x_train, soft_train, epochs=12, batch_size=32, verbose=0)
test_kld, test_agreement = student.evaluate(x_test, soft_test, verbose=0)
pred = np.argmax(student.predict(x_test, verbose=0), axis=-1)
results = {"loss": history.history["loss"][-1], "test_kld": test_kld, "test_agreement_acc": test_agreement,
           "student_accuracy": float(np.mean(pred == y_test)),
           "teacher_accuracy": float(teacher.score(x_test, y_test))}
print(results)
