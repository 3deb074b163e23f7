"""Breast cancer diagnosis (569 samples, 30 features, binary; scikit-learn's bundled
copy): a standardised MLP with a sigmoid output and binary cross-entropy, against
scikit-learn's MLPClassifier with the same hidden sizes, epochs and batch size.

    python examples/breast_cancer.py [--backend cpu] [--epochs 100]
"""
from __future__ import annotations

from sklearn.datasets import load_breast_cancer

import fusednn
from fusednn import keras, metrics, preprocessing

from _compare import fit_sklearn, options, report, sklearn_mlp, timed

args = options(default_epochs=100)
HIDDEN, BATCH, LR = (32, 16), 32, 1e-3

data = load_breast_cancer()
x_train, x_test, y_train, y_test = preprocessing.train_test_split(
    data.data, data.target, test_size=0.25, stratify=data.target, random_state=args.seed)
scaler = preprocessing.StandardScaler().fit(x_train)
x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)

fusednn.utils.set_random_seed(args.seed)
model = keras.Sequential([keras.layers.Dense(HIDDEN[0], activation="relu", input_shape=(30,)),
                          keras.layers.Dense(HIDDEN[1], activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(keras.optimizers.Adam(LR), "binary_crossentropy", metrics=["accuracy", "f1"])
t_ours = timed(lambda: model.fit(x_train, y_train, batch_size=BATCH, epochs=args.epochs, verbose=0))
pred = (model.predict(x_test, verbose=0)[:, 0] > 0.5).astype(int)

sk = sklearn_mlp("classification", HIDDEN, args.epochs, BATCH, LR, args.seed)
t_sk = fit_sklearn(sk, x_train, y_train)
sk_pred = sk.predict(x_test)


def scores(p):
    return {"accuracy": metrics.accuracy_score(y_test, p), "precision": metrics.precision_score(y_test, p),
            "recall": metrics.recall_score(y_test, p), "f1": metrics.f1_score(y_test, p)}


report(f"breast cancer: {len(x_train)} train / {len(x_test)} test samples, {args.epochs} epochs, batch {BATCH}",
       [(f"fusednn ({fusednn.get_backend().name})", scores(pred), t_ours),
        ("sklearn MLPClassifier", scores(sk_pred), t_sk)],
       "fusednn test F1 >= 0.95; fusednn fit time below scikit-learn's")
