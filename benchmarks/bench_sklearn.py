"""fusednn.sklearn's MLPClassifier/MLPRegressor against scikit-learn's, same run.

    python benchmarks/bench_sklearn.py [--repeats 3] [--threads 1] [--quick]

Four tasks: digits and breast cancer (accuracy), diabetes and a California-housing-
shaped regression (make_regression: 20640 x 8, no download) (R²), each split 75/25
with random_state=0 and standardised on the training part (targets too, for the
regressions). Both estimators get identical hyperparameters (scikit-learn's
defaults: one hidden layer of 100 relu units, adam, alpha=1e-4, batch 200, and the
task's max_iter; random_state=0, so both start from the same weights). The fit
time is the median over --repeats fits in this process; the score is the test
score of the last fit (fits are deterministic). BLAS threads (scikit-learn) and
fusednn's threads are both limited to --threads, since thread oversubscription
on a shared machine otherwise dominates the numbers.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import numpy as np
from sklearn import neural_network
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import fusednn
from fusednn import sklearn as fsk


def tasks(quick: bool):
    x, y = load_digits(return_X_y=True)
    yield "digits (1797x64, 10 classes)", "clf", x, y, 200
    x, y = load_breast_cancer(return_X_y=True)
    yield "breast cancer (569x30, 2 classes)", "clf", x, y, 200
    x, y = load_diabetes(return_X_y=True)
    yield "diabetes (442x10)", "reg", x, y, 200
    n = 4000 if quick else 20640
    x, y = make_regression(n_samples=n, n_features=8, n_informative=6, noise=10.0, random_state=0)
    y = y + 0.002 * y ** 2  # a little curvature, so a network beats a line
    yield f"California-like make_regression ({n}x8)", "reg", x, y, 30 if quick else 100


def run(cls, kind, xtr, ytr, xte, yte, max_iter, repeats):
    times, model = [], None
    for _ in range(repeats):
        model = cls(random_state=0, max_iter=max_iter)
        t0 = time.perf_counter()
        model.fit(xtr, ytr)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), model.score(xte, yte), model.n_iter_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a smaller regression task and fewer epochs")
    args = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    fusednn.set_num_threads(args.threads)
    print(f"# fusednn {fusednn.__version__} backend={fusednn.get_backend().name} threads={args.threads} "
          f"repeats={args.repeats}; {platform.processor() or platform.machine()}, {platform.python_version()}")
    print("| task | metric | scikit-learn | fusednn | sklearn fit s | fusednn fit s | speed-up | epochs (sk/fd) |")
    print("|---|---|---|---|---|---|---|---|")
    with threadpool_limits(args.threads):
        for name, kind, x, y, max_iter in tasks(args.quick):
            xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0)
            sc = StandardScaler().fit(xtr)
            xtr, xte = sc.transform(xtr), sc.transform(xte)
            if kind == "reg":
                mu, sd = ytr.mean(), ytr.std()
                ytr, yte = (ytr - mu) / sd, (yte - mu) / sd
            sk_cls = neural_network.MLPClassifier if kind == "clf" else neural_network.MLPRegressor
            fd_cls = fsk.MLPClassifier if kind == "clf" else fsk.MLPRegressor
            ts, ss, ns = run(sk_cls, kind, xtr, ytr, xte, yte, max_iter, args.repeats)
            tf, sf, nf = run(fd_cls, kind, xtr, ytr, xte, yte, max_iter, args.repeats)
            metric = "accuracy" if kind == "clf" else "R²"
            print(f"| {name} | {metric} | {ss:.4f} | {sf:.4f} | {ts:.3f} | {tf:.3f} | {ts / tf:.1f}x | {ns}/{nf} |",
                  flush=True)


if __name__ == "__main__":
    main()
