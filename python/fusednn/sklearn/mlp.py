"""MLPClassifier and MLPRegressor: scikit-learn's estimators trained by fusednn.

The estimators hold only their parameters until ``fit``; the fitted state is
NumPy arrays (``coefs_``, ``intercepts_``, curves and counters) plus a fusednn
``Sequential`` that is rebuilt lazily from those arrays (never pickled), so they
clone, pickle and cross process boundaries like scikit-learn's own.

How scikit-learn's objective maps onto fusednn's (so that the updates are the
same up to float32 rounding): scikit-learn's loss per batch of ``n`` samples is
``data_loss + 0.5 * alpha * sum(W**2) / n`` and its output-layer delta is
``(p - y) / n``. fusednn's losses differ from that by a constant factor ``c`` in
the gradient: 1 for the softmax cross-entropy, ``1/k`` for the sigmoid one over
``k`` outputs (a mean, not a sum, over outputs), ``2/k`` for the mean squared
error. So each kernel gets a Keras ``L2(c * alpha / (2 * batch_size))``
regularizer (intercepts none) whose factor each step multiplies by
``batch_size / n_step`` (``n_step`` that step's sample count, or with sample
weights the sum of its weights, the divisor scikit-learn uses), SGD's learning
rate is divided by ``c`` and
Adam's epsilon multiplied by ``c`` (Adam is otherwise invariant to the scale),
and the reported losses are divided by the ratio of the data losses (``c``, but 2
for the squared error: for ``k`` > 1 regression outputs scikit-learn's own
gradient is ``k`` times that of the loss it reports, so there ``loss_curve_``'s
penalty part is ``1/k`` of scikit-learn's). Sample weights scale each row's loss
and gradient by ``n_step * w_i / sum(w_step)`` inside the fused step, which makes
the step's loss scikit-learn's weighted average.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from numbers import Integral, Real
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, Options, StrOptions, validate_parameter_constraints
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

import fusednn
from fusednn import keras, regularizers
from fusednn.training import fused

from .lbfgs import fit_lbfgs

_STOCHASTIC_SOLVERS = ("sgd", "adam")
# bounds on one native run of several epochs (memory of the epochs' orders; Ctrl-C latency)
_MAX_EPOCHS_PER_RUN = 64
# A native run of several epochs lasts about this long (from the trainer's latest time per
# step): long enough that its fixed cost (~30 us) is small, short enough that the replicas'
# helper timing (fusednn/cpu_replicas.h: ReplicaTiming), which decides once a run, can
# recover within a fit from a run the machine slowed down.
_RUN_SECONDS = 0.005
_MAX_ROWS_PER_RUN = 1 << 22
_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_OUTPUT = {"softmax": ("softmax", "categorical_crossentropy"), "logistic": ("sigmoid", "binary_crossentropy"),
           "identity": (None, "mse")}


@contextlib.contextmanager
def _on_backend(name: str | None) -> Iterator[None]:
    """Make ``name`` the active fusednn backend while models are built (None: keep)."""
    if name is None:
        yield
        return
    previous = fusednn.get_backend().name
    fusednn.set_backend(name)
    try:
        yield
    finally:
        fusednn.set_backend(previous)


def _dense(X: Any) -> np.ndarray:
    """The float32 C-contiguous array fusednn trains on (sparse input is densified)."""
    if sp.issparse(X):
        X = X.toarray()
    return np.ascontiguousarray(X, dtype=np.float32)


def _permutations(rs: np.random.RandomState, order: np.ndarray, epochs: int) -> np.ndarray:
    """(epochs, n): the sample orders after 1, 2, ... calls of ``rs.permutation``, each on
    the previous order, as scikit-learn shuffles once per epoch. Drawn natively from
    ``rs``'s own generator where the cpu extension is built (numpy's per-call cost was
    14 % of a diabetes fit); the draws, and ``rs``'s state after them, are numpy's."""
    from fusednn.backends.compiled import native

    cpu = native("cpu")
    bitgen = getattr(rs, "_bit_generator", None)  # RandomState's MT19937 (numpy >= 1.17)
    if cpu is not None and isinstance(bitgen, np.random.MT19937):
        with bitgen.lock:
            return cpu.legacy_permutations(bitgen.capsule, np.ascontiguousarray(order, dtype=np.int64), epochs,
                                           mt19937=True)
    out = np.empty((epochs, len(order)), dtype=np.int64)
    for e in range(epochs):
        order = out[e] = rs.permutation(order)
    return out


def _epoch_loss(step_losses: np.ndarray, sizes: np.ndarray, n: int) -> float:
    """The epoch's mean loss: each step's loss times its row count, summed in step order,
    over the rows; the bits of the trainer's epoch_stop rule (the products are exact)."""
    total = 0.0
    for loss, size in zip(step_losses.tolist(), sizes.tolist()):
        total += loss * size
    return total / n


def _indicator(lb: LabelBinarizer, y: np.ndarray) -> np.ndarray:
    """``lb.transform(y).astype(bool)`` for labels that are all among ``lb.classes_`` (the
    caller checked): for a 1-D binary or multi-class ``y`` one search of the sorted
    classes instead of label_binarize's target checks and sparse detour (half of a
    small fit's fixed cost); anything else goes through ``lb`` itself."""
    classes = lb.classes_
    if y.ndim != 1 or lb.y_type_ not in ("binary", "multiclass") or len(classes) < 2 or lb.sparse_input_:
        return lb.transform(y).astype(bool)
    idx = np.searchsorted(classes, y)
    if len(classes) == 2:
        return (idx == 1).reshape(-1, 1)
    out = np.zeros((len(y), len(classes)), dtype=bool)
    out[np.arange(len(y)), idx] = True
    return out


class _StepParamBlocks:
    """The optimizer's step parameter rows for the fused trainer, computed for
    ``epochs`` epochs at a time: scikit-learn's epochs are a few steps each, and one
    ``step_params`` call per epoch cost as much as the epoch's native run (diabetes).
    Rows are a function of the step number and the learning rate only, so a block is
    reused while the learning rate stays (``invscaling``/``adaptive`` change it)."""

    def __init__(self, steps: int, epochs: int = 64) -> None:
        self.steps, self.epochs = steps, epochs
        self._rows: np.ndarray | None = None
        self._start = 0
        self._lr: Any = None

    def rows(self, opt: Any, epochs: int = 1) -> np.ndarray:
        """The rows of the next ``epochs`` epochs' steps (from ``opt.iterations``)."""
        it, lr, need = int(opt.iterations), opt.learning_rate, self.steps * epochs
        rows = self._rows
        if rows is None or lr != self._lr or it < self._start or it + need > self._start + len(rows):
            rows = self._rows = opt.step_params(it, max(need, self.steps * self.epochs))
            self._start, self._lr = it, lr
        return rows[it - self._start:it - self._start + need]


class _BaseMLP(BaseEstimator):
    """The parameters, training loop and prediction shared by the two estimators."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "backend": [None, StrOptions({"numpy", "cpu", "cuda"})],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend

    @classmethod
    @functools.cache
    def _get_param_names(cls) -> list[str]:
        # scikit-learn reads __init__'s signature on every get_params (fit, clone, repr):
        # a third of a small fit's parameter check; the signature never changes
        return super()._get_param_names()

    def _check_params(self) -> None:
        """scikit-learn's parameter validation (InvalidParameterError naming the bad one)."""
        validate_parameter_constraints(self._parameter_constraints, self.get_params(deep=False),
                                       caller_name=type(self).__name__)

    # ------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        # the fusednn model holds backend arrays and native trainers: rebuilt from
        # coefs_/intercepts_ on first use after unpickling. The optimizer's state (step
        # count, moments/velocities) travels as NumPy arrays, so that partial_fit after
        # unpickling continues it as scikit-learn's pickled _optimizer does.
        state = super().__getstate__()
        net = state.pop("_net", None)
        key = state.pop("_net_key", None)
        state.pop("_trainer", None)
        if net is not None and self.solver in _STOCHASTIC_SOLVERS:
            iterations, arrays = net.optimizer.get_state()
            state["_opt_state"] = {"key": key, "iterations": int(iterations), "arrays": arrays}
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------ the network
    def _scale(self) -> float:
        """c: fusednn's loss gradient over scikit-learn's (see the module docstring)."""
        k = self.n_outputs_
        return {"softmax": 1.0, "logistic": 1.0 / k, "identity": 2.0 / k}[self.out_activation_]

    def _loss_ratio(self) -> float:
        """fusednn's data loss over scikit-learn's: c, except 2 for the squared error
        (a mean over all outputs where scikit-learn takes half of it)."""
        return 2.0 if self.out_activation_ == "identity" else self._scale()

    def _build_net(self, batch: int) -> keras.Sequential:
        """A fusednn model with the current coefs_/intercepts_, compiled with the
        solver's optimizer (fresh state) and the regularizer for ``batch``."""
        c = self._scale()
        units = [c_.shape[1] for c_ in self.coefs_]
        hidden = _ACTIVATIONS[self.activation]
        out_act, loss = _OUTPUT[self.out_activation_]
        with _on_backend(self.backend):
            layers: list[Any] = [keras.Input(shape=(self.coefs_[0].shape[0],))]
            for i, u in enumerate(units):
                last = i == len(units) - 1
                layers.append(keras.layers.Dense(u, activation=out_act if last else hidden))
            net = keras.Sequential(layers)
        net.set_weights([w for pair in zip(self.coefs_, self.intercepts_) for w in pair])
        if self.solver == "adam":
            opt = keras.optimizers.Adam(learning_rate=float(self.learning_rate_init), beta_1=float(self.beta_1),
                                        beta_2=float(self.beta_2), epsilon=float(self.epsilon) * c)
        else:
            opt = keras.optimizers.SGD(learning_rate=float(self.learning_rate_init) / c,
                                       momentum=float(self.momentum), nesterov=bool(self.nesterovs_momentum))
        self._set_penalty(net, batch)
        net.compile(optimizer=opt, loss=loss)
        self._net, self._net_key = net, (batch, self.alpha, self.solver, self.activation)
        self._trainer = None
        saved = self.__dict__.pop("_opt_state", None)  # from unpickling: continue that optimizer
        if saved is not None and saved["key"] is not None and saved["key"][1:] == self._net_key[1:]:
            net.optimizer.set_state(saved["iterations"], saved["arrays"])
        return net

    def _set_penalty(self, net: keras.Sequential, batch: int) -> None:
        l2 = self._scale() * float(self.alpha) / (2.0 * batch)
        for layer in net.layers:
            layer.kernel_regularizer = regularizers.L2(l2) if self.alpha > 0 else None

    def _model(self) -> keras.Sequential:
        """The fusednn model of the fitted weights (rebuilt after unpickling)."""
        net = getattr(self, "_net", None)
        if net is None:
            net = self._build_net(getattr(self, "_batch", 1))
        return net

    # ------------------------------------------------------------ fitting
    def _init_coef(self, fan_in: int, fan_out: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        # scikit-learn's Glorot-uniform draw (factor 2 for logistic), in its order
        factor = 2.0 if self.activation == "logistic" else 6.0
        bound = np.sqrt(factor / (fan_in + fan_out))
        coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
        intercept = self._random_state.uniform(-bound, bound, fan_out)
        return coef.astype(dtype, copy=False), intercept.astype(dtype, copy=False)

    def _initialize(self, y: np.ndarray, layer_units: list[int], dtype: Any) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        self.coefs_, self.intercepts_ = [], []
        for i in range(self.n_layers_ - 1):
            coef, intercept = self._init_coef(layer_units[i], layer_units[i + 1], dtype)
            self.coefs_.append(coef)
            self.intercepts_.append(intercept)
        self._net = None
        if self.solver not in _STOCHASTIC_SOLVERS:  # scikit-learn sets the curves for these only
            return
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self._net = None

    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False) -> "_BaseMLP":
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if not incremental:  # fit starts a new optimizer, as scikit-learn's
            self.__dict__.pop("_opt_state", None)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        n_samples, n_features = X.shape
        layer_units = [n_features] + hidden + [y.shape[1]]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        elif [c.shape for c in self.coefs_] != [(a, b) for a, b in zip(layer_units[:-1], layer_units[1:])]:
            raise ValueError(f"the fitted network has layer sizes {[c.shape for c in self.coefs_]}; "
                             f"hidden_layer_sizes={hidden} with this data needs {layer_units}")
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, y, sample_weight)
        else:
            self._fit_stochastic(X, y, sample_weight, incremental)
        weights = [*self.coefs_, *self.intercepts_]
        if not all(np.isfinite(w).all() for w in weights):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _fit_lbfgs(self, X: Any, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        """scikit-learn's full-batch L-BFGS (scipy's L-BFGS-B) over fusednn's loss and
        gradient (see ``lbfgs.py``)."""
        self._batch = X.shape[0]
        net = self._build_net(self._batch)
        be = net.layers[0].backend
        fit_lbfgs(self, be, be.asarray(_dense(X)), y, sample_weight)
        net.set_weights([w for pair in zip(self.coefs_, self.intercepts_) for w in pair])

    def _fit_stochastic(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None,
                        incremental: bool) -> None:
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            stratify = y if (is_classifier(self) and self.n_outputs_ == 1) else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify)
                sw_train = sw_val = None
            else:
                X_train, X_val, y_train, y_val, sw_train, sw_val = train_test_split(
                    X, y, sample_weight, random_state=self._random_state, test_size=self.validation_fraction,
                    stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            X_val = _dense(X_val)
        else:
            X_train, y_train, X_val, y_val = X, y, None, None
            sw_train, sw_val = sample_weight, None
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = int(np.clip(self.batch_size, 1, n))
        self._batch = batch

        # fit starts a new optimizer (as scikit-learn); partial_fit keeps its state
        net = getattr(self, "_net", None)
        key = (batch, self.alpha, self.solver, self.activation)
        if net is None or not incremental or self._net_key[1:] != key[1:]:
            net = self._build_net(batch)
        elif self._net_key != key:  # partial_fit on a different batch size: rescale the penalty
            self._set_penalty(net, batch)
            self._net_key = key
        c = self._scale()
        be = net.layers[0].backend
        xd = be.asarray(_dense(X_train))
        yd = be.asarray(np.ascontiguousarray(y_train, dtype=np.float32))
        trainer = self._trainer = fused.trainer_for(net, batch, cached=getattr(self, "_trainer", None))
        steps = -(-n // batch)
        sizes = np.full(steps, batch, dtype=np.float64)
        sizes[-1] = n - (steps - 1) * batch
        step_losses = be.zeros((steps,)) if trainer is not None else None
        sample_idx = np.arange(n, dtype=np.int64)
        param_blocks = _StepParamBlocks(steps, epochs=max(1, min(64, self.max_iter)))
        # each step's rows split between two threads where that pays (cpu backend)
        replicas = fused.replicas_for(net, batch) if trainer is not None else 1
        if sw_train is not None and trainer is None:
            raise ValueError(f"sample_weight needs a backend with a fused trainer (cpu or cuda), not {be.name!r}")
        # the regularizer's factor per step (scikit-learn divides by the step's sample
        # count or weight sum); constant over epochs without sample weights
        const_weights = None
        if sw_train is None and self.alpha > 0 and n % batch:
            const_weights = {"row_scale": None, "penalty_scale": (batch / sizes).astype(np.float32)}
        self._lr = float(getattr(self, "_lr", self.learning_rate_init)) if incremental else \
            float(self.learning_rate_init)
        # Several epochs per native run where nothing between them but the no-improvement
        # rule can change the training: the run applies that rule itself (epoch_stop) and
        # ends after the epoch where it fires, where the loop below stops or lowers the
        # learning rate; the shuffles are drawn from the random state as one by one (and
        # the state is put back to after the epochs run when the run ends early).
        multi = (trainer is not None and be.name == "cpu" and not early_stopping and sw_train is None
                 and not incremental and not (self.solver == "sgd" and self.learning_rate == "invscaling"))

        ratio = self._loss_ratio()

        def after_epoch(epoch_loss: float) -> bool:
            """scikit-learn's bookkeeping after an epoch; True: stop."""
            self.n_iter_ += 1
            self.loss_ = epoch_loss / ratio
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            self._update_no_improvement_count(early_stopping, net, X_val, y_val, sw_val)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self._lr = float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                net.optimizer.learning_rate = self._lr / c
            if self._no_improvement_count > self.n_iter_no_change:
                if early_stopping:
                    msg = ("Validation score did not improve more than tol=%f for %d consecutive epochs."
                           % (self.tol, self.n_iter_no_change))
                else:
                    msg = ("Training loss did not improve more than tol=%f for %d consecutive epochs."
                           % (self.tol, self.n_iter_no_change))
                if self._trigger_stopping(msg, net, c):
                    return True
                self._no_improvement_count = 0
            if incremental:
                return True
            if self.n_iter_ == self.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                              "hasn't converged yet." % self.max_iter, ConvergenceWarning)
            return False

        try:
            self.n_iter_ = 0  # counts this call's epochs, as in scikit-learn
            stop = False
            while not stop and self.n_iter_ < self.max_iter:
                k = 1
                if multi:  # (the first epoch alone, timed)
                    timed = max(1, int(_RUN_SECONDS / (trainer.step_seconds * steps))) if trainer.step_seconds else 1
                    k = int(max(1, min(self.max_iter - self.n_iter_, _MAX_EPOCHS_PER_RUN, _MAX_ROWS_PER_RUN // n,
                                       timed)))
                if k > 1:
                    rng_state = None
                    if self.shuffle:
                        rng_state = self._random_state.get_state()
                        orders = _permutations(self._random_state, sample_idx, k)
                    else:
                        orders = np.broadcast_to(sample_idx, (k, n))
                    run_losses = np.zeros(k * steps, dtype=np.float32)
                    weights = None if const_weights is None else \
                        {"row_scale": None, "penalty_scale": np.tile(const_weights["penalty_scale"], k)}
                    rule = {"steps": steps, "sizes": sizes, "rows": float(n), "ratio": ratio, "tol": float(self.tol),
                            "patience": float(self.n_iter_no_change), "best": float(self.best_loss_),
                            "count": int(self._no_improvement_count), "losses": np.zeros(k)}
                    ran = trainer.run_epochs(net, xd, yd, orders, run_losses, weights=weights,
                                             params=param_blocks.rows(net.optimizer, k), replicas=replicas,
                                             epoch_stop=rule)
                    if ran < k and rng_state is not None:  # the state after `ran` epochs' shuffles
                        self._random_state.set_state(rng_state)
                        _permutations(self._random_state, sample_idx, ran)
                    sample_idx = orders[ran - 1]
                    epoch_losses = rule["losses"][:ran].tolist()
                else:
                    if self.shuffle:
                        sample_idx = _permutations(self._random_state, sample_idx, 1)[0]
                    if trainer is not None:
                        weights = const_weights if sw_train is None else \
                            self._step_weights(sw_train[sample_idx], batch, sizes, be)
                        trainer.epoch(net, xd, yd, sample_idx, step_losses, steps, None, False, weights=weights,
                                      params=param_blocks.rows(net.optimizer), replicas=replicas)
                        epoch_losses = [_epoch_loss(be.to_numpy(step_losses), sizes, n)]
                    else:  # a backend without a fused trainer: the per-op path, batches in this order
                        hist = net.fit(xd[sample_idx], yd[sample_idx], batch_size=batch, epochs=1, shuffle=False,
                                       verbose=0)
                        epoch_losses = [float(hist.history["loss"][0])]
                for epoch_loss in epoch_losses:
                    stop = after_epoch(epoch_loss)
                    if stop:  # (only at the last epoch of a run: the run applied the same rule)
                        break
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        self._read_weights(net, X_train.dtype)
        if early_stopping:  # restore the best weights
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts
            net.set_weights([w for pair in zip(self.coefs_, self.intercepts_) for w in pair])

    @staticmethod
    def _step_weights(w: np.ndarray, batch: int, sizes: np.ndarray, be: Any) -> dict[str, Any]:
        """The trainer's row and penalty scales for sample weights ``w`` in epoch order:
        row i of step s gets n_s * w_i / sum(w_s), step s's penalty batch / sum(w_s)
        (a step whose weights sum to 0 contributes nothing)."""
        sums = np.add.reduceat(w, np.arange(0, len(w), batch))
        inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
        row = np.repeat(sizes * inv, sizes.astype(np.int64)) * w
        return {"row_scale": be.asarray(row.astype(np.float32)), "penalty_scale": (batch * inv).astype(np.float32)}

    def _trigger_stopping(self, msg: str, net: keras.Sequential, c: float) -> bool:
        if self.solver == "adam" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._lr <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._lr /= 5.0
        net.optimizer.learning_rate = self._lr / c
        if self.verbose:
            print(msg + " Setting learning rate to %f" % self._lr)
        return False

    def _read_weights(self, net: keras.Sequential, dtype: Any) -> None:
        w = net.get_weights()
        self.coefs_ = [a.astype(dtype) for a in w[0::2]]
        self.intercepts_ = [a.astype(dtype) for a in w[1::2]]

    def _update_no_improvement_count(self, early_stopping: bool, net: keras.Sequential, X_val: Any,
                                     y_val: Any, sw_val: Any = None) -> None:
        if early_stopping:
            score = self._score_raw(net, X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                w = net.get_weights()
                self._best_coefs = [a.astype(self.coefs_[0].dtype) for a in w[0::2]]
                self._best_intercepts = [a.astype(self.coefs_[0].dtype) for a in w[1::2]]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # ------------------------------------------------------------ prediction
    def _forward(self, X: Any, check_input: bool = True) -> np.ndarray:
        """The network's output (probabilities for a classifier) in X's float dtype."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False)
        out = self._model().predict(_dense(X), batch_size=max(1, min(4096, X.shape[0])), verbose=0)
        return out.astype(X.dtype if X.dtype == np.float32 else np.float64, copy=False)

    def _check_solver(self) -> bool:
        """partial_fit exists for the stochastic solvers only (scikit-learn's AttributeError)."""
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. %s is not stochastic."
                                 % self.solver)
        return True

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "_BaseMLP":
        """Fit the model to data matrix X and target(s) y (scikit-learn's ``fit``);
        ``sample_weight`` weighs each sample's loss as in scikit-learn."""
        self._check_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier with scikit-learn's ``MLPClassifier``
    parameters, attributes and methods (solvers 'adam' and 'sgd' in fusednn's fused
    native trainer, 'lbfgs' as scipy's L-BFGS-B over fusednn's kernels) on the
    ``backend`` given (None: the active one). Multi-class (softmax output), binary and multi-label
    (logistic outputs, indicator ``y``); ``alpha`` is an L2 penalty on the weights."""

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, np.ndarray]:
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the "
                                     f"previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        return X, _indicator(self._label_binarizer, y)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> "MLPClassifier":
        """One epoch over (X, y), keeping the optimizer state between calls; ``classes``
        (all the labels there will be) is required on the first call."""
        self._check_params()
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _score_raw(self, net: keras.Sequential, X: np.ndarray, y: Any, sample_weight: Any = None) -> float:
        p = net.predict(X, batch_size=max(1, min(4096, X.shape[0])), verbose=0)
        pred = self._label_binarizer.inverse_transform(p.ravel() if p.shape[1] == 1 else p)
        return float(accuracy_score(y, pred, sample_weight=sample_weight))

    def predict(self, X: Any) -> np.ndarray:
        """The predicted classes (an indicator matrix for multi-label targets)."""
        check_is_fitted(self)
        p = self._forward(X)
        return self._label_binarizer.inverse_transform(p.ravel() if self.n_outputs_ == 1 else p)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each class, columns in ``classes_`` order (two columns for a
        binary problem; one per label for multi-label)."""
        check_is_fitted(self)
        p = self._forward(X)
        if self.n_outputs_ == 1:
            p = p.ravel()
            return np.vstack([1 - p, p]).T
        return p

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p, out=p)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor with scikit-learn's ``MLPRegressor``
    parameters, attributes and methods (squared error; solvers 'adam' and 'sgd' in
    fusednn's fused native trainer, 'lbfgs' as scipy's L-BFGS-B over fusednn's
    kernels) on the ``backend`` given (None: the active one); one or several outputs, identity output activation."""

    _parameter_constraints: dict = {**_BaseMLP._parameter_constraints, "loss": [StrOptions({"squared_error"})]}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend=None):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
                         power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         n_iter_no_change=n_iter_no_change, max_fun=max_fun, backend=backend)
        self.loss = loss

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, np.ndarray]:
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPRegressor":
        """One epoch over (X, y), keeping the optimizer state between calls."""
        self._check_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _score_raw(self, net: keras.Sequential, X: np.ndarray, y: Any, sample_weight: Any = None) -> float:
        p = net.predict(X, batch_size=max(1, min(4096, X.shape[0])), verbose=0)
        return float(r2_score(y, p.ravel() if p.shape[1] == 1 else p, sample_weight=sample_weight))

    def predict(self, X: Any) -> np.ndarray:
        """The predicted values: (n_samples,) for one output, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        p = self._forward(X)
        return p.ravel() if p.shape[1] == 1 else p
