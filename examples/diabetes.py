"""Diabetes progression (442 samples, 10 features, regression; scikit-learn's bundled
copy): a standardised MLP trained on MSE, against scikit-learn's MLPRegressor with the
same hidden sizes, epochs and batch size on the same standardised data. With 331
training samples both overfit as training goes on (test R2 of both falls from
about 0.3-0.4 at 30 epochs to 0.2-0.35 at 100), so 30 epochs is the default.

    python examples/diabetes.py [--backend cpu] [--epochs 30]
"""
from __future__ import annotations

from sklearn.datasets import load_diabetes

import fusednn
from fusednn import keras, metrics, preprocessing

from _compare import fit_sklearn, options, report, sklearn_mlp, timed

args = options(default_epochs=30)
HIDDEN, BATCH, LR = (32, 16), 32, 1e-3

data = load_diabetes()
x_train, x_test, y_train, y_test = preprocessing.train_test_split(
    data.data, data.target, test_size=0.25, random_state=args.seed)
xs = preprocessing.StandardScaler().fit(x_train)
ys = preprocessing.StandardScaler().fit(y_train.reshape(-1, 1))  # targets near unit scale train faster
x_train, x_test = xs.transform(x_train), xs.transform(x_test)
t_train = ys.transform(y_train.reshape(-1, 1))

fusednn.utils.set_random_seed(args.seed)
model = keras.Sequential([keras.layers.Dense(HIDDEN[0], activation="relu", input_shape=(10,)),
                          keras.layers.Dense(HIDDEN[1], activation="relu"),
                          keras.layers.Dense(1)])
model.compile(keras.optimizers.Adam(LR), "mse", metrics=["mae"])
t_ours = timed(lambda: model.fit(x_train, t_train, batch_size=BATCH, epochs=args.epochs, verbose=0))
pred = ys.inverse_transform(model.predict(x_test, verbose=0))[:, 0]

sk = sklearn_mlp("regression", HIDDEN, args.epochs, BATCH, LR, args.seed)
t_sk = fit_sklearn(sk, x_train, t_train.ravel())
sk_pred = ys.inverse_transform(sk.predict(x_test).reshape(-1, 1))[:, 0]


def scores(p):
    return {"R2": metrics.r2_score(y_test, p), "MAE": metrics.mean_absolute_error(y_test, p),
            "RMSE": metrics.mean_squared_error(y_test, p) ** 0.5}


report(f"diabetes: {len(x_train)} train / {len(x_test)} test samples, {args.epochs} epochs, batch {BATCH}",
       [(f"fusednn ({fusednn.get_backend().name})", scores(pred), t_ours),
        ("sklearn MLPRegressor", scores(sk_pred), t_sk)],
       "fusednn test R2 within 0.03 of scikit-learn's or better; fusednn fit time below scikit-learn's")
