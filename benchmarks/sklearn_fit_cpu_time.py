"""fusednn.sklearn's fit alone on bench_sklearn.py's four tasks, in process CPU time.

    python benchmarks/sklearn_fit_cpu_time.py [--label after] [--package-dir OLD/python]

For before/after comparisons of a change on a shared machine: run it alternately
against this checkout and against another copy of the package (``--package-dir``:
a directory holding a ``fusednn`` package with its built ``_cpu`` extension, e.g.
``git archive <commit> python/fusednn`` plus that commit's build), several times each.
CPU time does not count the time the machine spent running other jobs. Prints one
line: the median of ``--repeats`` fits per task, in seconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--label", default="")
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--package-dir", help="import fusednn from here instead of the installed package")
args = ap.parse_args()
if args.package_dir:  # the editable install's import hook would win over sys.path
    sys.meta_path = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable_skbc_")]
    sys.path.insert(0, args.package_dir)

import fusednn  # noqa: E402
from fusednn import sklearn as fsk  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

warnings.simplefilter("ignore", ConvergenceWarning)
fusednn.set_num_threads(1)


def tasks():
    x, y = load_digits(return_X_y=True)
    yield "digits", False, x, y, 200
    x, y = load_breast_cancer(return_X_y=True)
    yield "breast cancer", False, x, y, 200
    x, y = load_diabetes(return_X_y=True)
    yield "diabetes", True, x, y, 200
    x, y = make_regression(n_samples=20640, n_features=8, n_informative=6, noise=10.0, random_state=0)
    yield "California-like", True, x, y + 0.002 * y ** 2, 100


cells = []
for name, regression, x, y, max_iter in tasks():
    xtr, _, ytr, _ = train_test_split(x, y, test_size=0.25, random_state=0)
    xtr = StandardScaler().fit(xtr).transform(xtr)
    if regression:
        ytr = (ytr - ytr.mean()) / ytr.std()
    cls = fsk.MLPRegressor if regression else fsk.MLPClassifier
    times = []
    for _ in range(args.repeats):
        model = cls(random_state=0, max_iter=max_iter)
        c0 = time.process_time()
        model.fit(xtr, ytr)
        times.append(time.process_time() - c0)
    cells.append(f"{name} {statistics.median(times):.4f}")
print(f"{args.label} ({fusednn.__file__}): " + " | ".join(cells), flush=True)
