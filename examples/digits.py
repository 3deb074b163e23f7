"""Handwritten digits (8x8 images, 10 classes, scikit-learn's bundled copy): an MLP
with training-time augmentation (small rotations, zoom, pixel noise), against
scikit-learn's MLPClassifier with the same hidden size, epochs and batch size.

    python examples/digits.py [--backend cpu] [--epochs 60]
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

import fusednn
from fusednn import keras, metrics, preprocessing

from _compare import fit_sklearn, options, report, sklearn_mlp, timed

args = options(default_epochs=60)
HIDDEN, BATCH, LR = (128,), 32, 1e-3

data = load_digits()
x = (data.data / 16.0).astype(np.float32)  # pixel intensities 0..16 -> 0..1
x_train, x_test, y_train, y_test = preprocessing.train_test_split(
    x, data.target, test_size=0.25, stratify=data.target, random_state=args.seed)

augment = preprocessing.Augmentation([
    preprocessing.RandomRotation(0.03, image_shape=(8, 8), seed=args.seed),      # about +-11 degrees
    preprocessing.RandomZoom(0.1, image_shape=(8, 8), seed=args.seed + 1),
    preprocessing.GaussianNoise(0.03, seed=args.seed + 2),
])

fusednn.utils.set_random_seed(args.seed)
model = keras.Sequential([keras.layers.Dense(HIDDEN[0], activation="relu", input_shape=(64,)),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(keras.optimizers.Adam(LR), "sparse_categorical_crossentropy", metrics=["accuracy"])
t_ours = timed(lambda: model.fit(x_train, y_train, batch_size=BATCH, epochs=args.epochs, verbose=0,
                                 augment=augment))
pred = model.predict(x_test, verbose=0).argmax(axis=1)

sk = sklearn_mlp("classification", HIDDEN, args.epochs, BATCH, LR, args.seed)
t_sk = fit_sklearn(sk, x_train, y_train)
sk_pred = sk.predict(x_test)


def scores(p):
    return {"accuracy": metrics.accuracy_score(y_test, p), "f1 (macro)": metrics.f1_score(y_test, p, average="macro")}


report(f"digits: {len(x_train)} train / {len(x_test)} test images, {args.epochs} epochs, batch {BATCH}",
       [(f"fusednn ({fusednn.get_backend().name}, augmented)", scores(pred), t_ours),
        ("sklearn MLPClassifier", scores(sk_pred), t_sk)],
       "fusednn test accuracy >= 0.96; fusednn fit time below scikit-learn's")
