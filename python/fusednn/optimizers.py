"""Optimizers with Keras 3's names, arguments, defaults, configs and update rules.

An optimizer is built against a model's parameter arrays when the model is
compiled (or first trained): its state (momenta, moments, accumulators, the EMA
of the weights and the iteration counter) lives on the model's backend next to
the parameters, carries over from one ``fit`` call to the next, is saved with
the model, and is reset by recompiling. Every optimizer runs the same way on
every path: for each step the optimizer computes one row of step parameters
(:meth:`Optimizer.step_params`: the learning rate from the schedule, bias
corrections, the EMA momentum...) and one kernel call per parameter array
(``optimizer_update``, fusednn/optim_update.h) clips the gradient, applies weight
decay, updates the parameter and its state and the moving average. The fused
trainer receives a run's rows as one array, so schedules cost nothing per step.
"""
from __future__ import annotations

import inspect
import math
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import registry, schedules
from .backends import Backend
# the kernel codes, re-exported here where the rows are built (fusednn/optim_update.h)
from .backends.optim_codes import (  # noqa: F401 - re-exported
    ALL_FLAGS, AMSGRAD, CENTERED, CLIP_GLOBAL, CLIP_NORM, CLIP_VALUE, EMA, KINDS, MOMENTUM, N_PARAMS, NESTEROV,
    P_A, P_B, P_C, P_CLIP, P_D, P_E, P_EMA, P_EMA1, P_EMA_OW, P_F, P_G, P_H, P_LR, P_WD, WEIGHT_DECAY,
    clip_factor, state_use)
from .schedules import LearningRateSchedule

#: every Optimizer subclass by class name, for restoring a saved model's compile settings
REGISTRY = registry.Registry("optimizer")


def _check(name: str, value: float, lo: float, hi: float = math.inf, hi_open: bool = False) -> float:
    value = float(value)
    if not (lo <= value and (value < hi if hi_open else value <= hi)):
        bound = f"[{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be in {bound}, got {value}")
    return value


def _f32(x: Any) -> Any:
    """``x`` rounded to float32 and back to float64 (the value a float32 kernel sees)."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def _takes_step(fn: Any) -> bool:
    """Whether a plain callable learning rate takes the step (Keras calls it with none)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return len(params) == 1 or any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values())


class Optimizer:
    """Base class with Keras 3's common arguments: ``learning_rate`` (a float, a
    :class:`~fusednn.schedules.LearningRateSchedule`, or a callable: of no argument as
    Keras calls it, or of the step), ``weight_decay`` (``w -= w*wd*lr`` before each
    update), one of ``clipnorm`` (per variable), ``clipvalue`` or ``global_clipnorm``
    (one norm over all gradients of the step), and ``use_ema``/``ema_momentum``/
    ``ema_overwrite_frequency`` (a moving average of the weights, written into the
    model every ``ema_overwrite_frequency`` steps and at the end of ``fit``).
    ``build(be, params)`` creates fresh state, ``apply(grads)`` takes one step;
    ``iterations`` counts the steps taken. A subclass names its ``kind`` (a kernel in
    :data:`KINDS`) and fills its columns of the step-parameter rows."""

    #: the kernel that runs this optimizer (a key of KINDS); None for a Python-only subclass
    kind: str | None = None

    def __init__(self, learning_rate: float | LearningRateSchedule | Callable = 0.001,
                 weight_decay: float | None = None, clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: int | None = None, loss_scale_factor: float | None = None,
                 gradient_accumulation_steps: int | None = None, name: str | None = None, **kwargs: Any) -> None:
        if kwargs.pop("decay", None) is not None:  # tf.keras 2's argument, as Keras 3 treats it
            warnings.warn("Argument `decay` is no longer supported and will be ignored.", stacklevel=2)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        self._learning_rate: Any = 0.0
        self.learning_rate = learning_rate
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                             f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        self.clipnorm = None if clipnorm is None else _check("clipnorm", clipnorm, 0.0)
        self.clipvalue = None if clipvalue is None else _check("clipvalue", clipvalue, 0.0)
        self.global_clipnorm = None if global_clipnorm is None else _check("global_clipnorm", global_clipnorm, 0.0)
        self.use_ema = bool(use_ema)
        if self.use_ema and not 0 <= ema_momentum <= 1:
            raise ValueError(f"`ema_momentum` must be in the range [0, 1]. Received: ema_momentum={ema_momentum}")
        if self.use_ema and ema_overwrite_frequency and (
                not isinstance(ema_overwrite_frequency, int) or ema_overwrite_frequency < 1):
            raise ValueError("`ema_overwrite_frequency` must be an integer >= 1 or None. Received: "
                             f"ema_overwrite_frequency={ema_overwrite_frequency}")
        self.ema_momentum = float(ema_momentum)
        self.ema_overwrite_frequency = ema_overwrite_frequency
        if loss_scale_factor is not None or gradient_accumulation_steps is not None:
            raise ValueError("loss_scale_factor and gradient_accumulation_steps are not supported by fusednn "
                             "(leave them None)")
        self.loss_scale_factor = None
        self.gradient_accumulation_steps = None
        self.name = name if name is not None else _snake(type(self).__name__)
        self.iterations = 0
        self._be: Backend | None = None
        self._params: list[Any] = []
        self._slots: list[list[Any]] = [[], [], []]  # s1..s3 per parameter (unused slots empty)
        self._ema: list[Any] = []
        self._names: list[str] = []
        self._exclude_ids: set[int] = set()
        self._exclude_vars: list[Any] = []
        self._exclude_pattern: re.Pattern | None = None

    # ---- learning rate -----------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step (the schedule's value at ``iterations``);
        assign a float (or a schedule / callable) between epochs, as in Keras."""
        lr = self._learning_rate
        if isinstance(lr, (LearningRateSchedule, Callable)) and not isinstance(lr, (int, float)):
            return float(self.learning_rates(self.iterations, 1)[0])
        return lr

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        if isinstance(value, LearningRateSchedule) or (callable(value) and not isinstance(value, (int, float))):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its "
                            "`learning_rate` constructor argument, hence its learning rate is not settable. If you "
                            "need the learning rate to be settable, you should instantiate the optimizer with a "
                            "float `learning_rate` argument.")
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(())[()]
        self._learning_rate = _check("learning_rate", value, 0.0)

    def learning_rates(self, iterations: int, k: int) -> np.ndarray:
        """The learning rates (float64 array) of the ``k`` steps that start with
        ``iterations`` steps already taken."""
        lr = self._learning_rate
        steps = np.arange(iterations, iterations + k, dtype=np.int64)
        if isinstance(lr, LearningRateSchedule):
            out = lr.at_steps(steps)
        elif callable(lr):
            out = [lr(int(s)) for s in steps] if _takes_step(lr) else [lr() for _ in steps]
        else:
            return np.full(k, float(lr))
        out = np.asarray(out, dtype=np.float64).reshape(-1)
        if out.shape != (k,):
            raise ValueError(f"the learning rate schedule returned {out.size} values for {k} steps")
        return out

    # ---- the kernel's view -------------------------------------------------
    def kernel_flags(self) -> int:
        """The optf bits of this optimizer's updates."""
        flags = self._kind_flags()
        if self.weight_decay is not None and self.weight_decay != 0:
            flags |= WEIGHT_DECAY
        if self.use_ema:
            flags |= EMA
        if self.clipnorm:
            flags |= CLIP_NORM
        elif self.global_clipnorm:
            flags |= CLIP_GLOBAL
        elif self.clipvalue:
            flags |= CLIP_VALUE
        return flags

    def kernel_spec(self) -> dict[str, int]:
        """``{"kind", "flags"}`` for the kernels and the fused trainer."""
        if self.kind is None:
            raise NotImplementedError(f"{type(self).__name__} has no update kernel")
        return {"kind": KINDS[self.kind], "flags": self.kernel_flags()}

    def _kind_flags(self) -> int:
        return 0

    def step_params(self, iterations: int, k: int) -> np.ndarray:
        """The (k, N_PARAMS) float32 rows of the ``k`` steps starting after
        ``iterations`` steps: the learning rate of each, and everything else the update
        kernel needs that depends on the step. Computed in float64 from the float32
        hyperparameters and rounded once, the same on every backend and path."""
        steps = np.arange(iterations, iterations + k, dtype=np.int64)
        lr = _f32(self.learning_rates(iterations, k))
        P = np.zeros((k, N_PARAMS), dtype=np.float64)
        P[:, P_LR] = lr
        if self.weight_decay is not None:
            P[:, P_WD] = self.weight_decay
        clip = self.clipnorm or self.global_clipnorm or self.clipvalue
        if clip:
            P[:, P_CLIP] = clip
        if self.use_ema:
            mom = np.where(steps != 0, np.float32(self.ema_momentum), np.float32(0))
            P[:, P_EMA] = mom
            P[:, P_EMA1] = np.float32(1) - mom
            if self.ema_overwrite_frequency:
                P[:, P_EMA_OW] = (steps + 1) % self.ema_overwrite_frequency == 0
        self._fill(P, steps + 1, lr)
        return P.astype(np.float32)

    def _fill(self, P: np.ndarray, t: np.ndarray, lr: np.ndarray) -> None:
        """Fill this kind's columns P_A.. for steps numbered ``t`` (1-based)."""

    # ---- state -------------------------------------------------------------
    def _slot_names(self) -> list[str]:
        """The state array kinds this optimizer keeps per parameter, in s1..s3 order."""
        return []

    def _slot_init(self, k: int) -> float:
        return 0.0

    def exclude_from_weight_decay(self, var_list: Sequence[Any] | None = None,
                                  var_names: Sequence[str] | None = None) -> None:
        """Keras' method: no weight decay for the variables in ``var_list`` (the arrays
        themselves, e.g. ``model.layers[0].bias``) or whose name (``'kernel'``,
        ``'bias'``) matches one of the regular expressions ``var_names``. Call it before
        the optimizer is built (before ``compile`` of a built model), as in Keras."""
        if self._be is not None:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before the optimizer is built.")
        self._exclude_ids = {id(v) for v in (var_list or [])}
        self._exclude_vars = list(var_list or [])  # keeps the ids valid
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def uses_weight_decay(self, i: int) -> bool:
        """Whether parameter ``i`` (build order) gets weight decay (Keras' _use_weight_decay)."""
        if id(self._params[i]) in self._exclude_ids:
            return False
        if self._exclude_pattern is not None and i < len(self._names) and \
                self._exclude_pattern.search(self._names[i]):
            return False
        return True

    def build(self, be: Backend, params: list[Any], names: Sequence[str] | None = None) -> None:
        """Bind to ``params`` (named ``names``, Keras' variable names, for
        exclude_from_weight_decay) on backend ``be`` with fresh state and no steps taken."""
        self._be, self._params, self.iterations = be, list(params), 0
        self._names = list(names) if names is not None else []
        self._slots = [[], [], []]
        for k, _ in enumerate(self._slot_names()):
            init = self._slot_init(k)
            arrays = [be.zeros(p.shape) for p in self._params]
            if init:
                for a in arrays:
                    a[...] = init
            self._slots[k] = arrays
        self._ema = [be.zeros(p.shape) for p in self._params] if self.use_ema else []
        self._build_state()

    def _build_state(self) -> None:
        pass

    def is_built_for(self, be: Backend, params: list[Any]) -> bool:
        """Whether the state was built for exactly these parameter arrays on ``be``."""
        return self._be is be and len(params) == len(self._params) and \
            all(a is b for a, b in zip(params, self._params))

    def slots(self) -> list[list[Any]]:
        """Per parameter (in ``build`` order) its state arrays (the moments, accumulators
        and moving average it keeps): the same arrays as :meth:`state_arrays`, grouped by
        the parameter they belong to."""
        return [list(d.values()) for d in self.param_states()]

    def param_states(self) -> list[dict[str, Any]]:
        """Per parameter (build order): ``{"s1": array, ..., "ema": array}`` for the
        state arrays the kernel uses (what the fused trainer is handed)."""
        out = []
        for i in range(len(self._params)):
            d = {f"s{k + 1}": self._slots[k][i] for k in range(3) if self._slots[k]}
            if self._ema:
                d["ema"] = self._ema[i]
            out.append(d)
        return out

    # ---- one step ----------------------------------------------------------
    def apply(self, grads: list[Any]) -> None:
        """Update every parameter in place from its gradient (same order as ``build``):
        clip, weight decay, the update rule, the moving average (Keras' order)."""
        spec = self.kernel_spec()
        kind, flags = spec["kind"], spec["flags"]
        P = self.step_params(self.iterations, 1)[0]
        be = self._be
        sumsq = 0.0
        if flags & CLIP_GLOBAL:
            for g in grads:
                sumsq += be.sum_squares(g)
        for i, (p, g) in enumerate(zip(self._params, grads)):
            if flags & CLIP_NORM:
                sumsq = be.sum_squares(g)
            s1, s2, s3 = (self._slots[k][i] if self._slots[k] else None for k in range(3))
            ema = self._ema[i] if self._ema else None
            f = flags if self.uses_weight_decay(i) else flags & ~WEIGHT_DECAY
            be.optimizer_update(kind, f, P, p, g, s1, s2, s3, ema, sumsq)
        self.iterations += 1

    def finalize_variable_values(self, var_list: list[Any] | None = None) -> None:
        """With ``use_ema``: overwrite the parameters with their moving averages (what
        ``fit`` does after its last epoch, as in Keras)."""
        if not self.use_ema or self._be is None or self.iterations == 0:
            return
        targets = self._params if var_list is None else list(var_list)
        if len(targets) != len(self._ema):
            raise ValueError(f"{len(targets)} variables given, the optimizer keeps {len(self._ema)} averages")
        for p, a in zip(targets, self._ema):
            p[...] = a

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY.register(cls)

    # ---- saving ------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (Keras' optimizer config, the
        schedule serialized as Keras does); ``from_config`` inverts it. The state is
        saved apart (:meth:`get_state`)."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = schedules.serialize(lr)
        elif callable(lr):
            raise TypeError("a plain callable learning rate cannot be saved; use a LearningRateSchedule "
                            "subclass with get_config()")
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency, "loss_scale_factor": None,
                "gradient_accumulation_steps": None}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Optimizer":
        """A new, unbuilt optimizer from :meth:`get_config`'s output."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def state_arrays(self) -> list[Any]:
        """The state ``build`` created (backend arrays, in a fixed order: each state
        kind over all parameters, then the moving averages)."""
        return [a for slot in self._slots for a in slot] + list(self._ema)

    def slots(self) -> list[list[Any]]:
        """Per parameter (in ``build`` order) its state arrays, e.g. SGD with momentum
        ``[velocity]``, Adam ``[m, v]``, none ``[]``: the same arrays as
        :meth:`state_arrays`, grouped by the parameter they belong to."""
        return [[] for _ in self._params]

    def get_state(self) -> tuple[int, list[np.ndarray]]:
        """The step count and NumPy copies of :meth:`state_arrays`."""
        return self.iterations, [np.array(self._be.to_numpy(a), dtype=np.float32) for a in self.state_arrays()]

    def set_state(self, iterations: int, arrays: Sequence[Any]) -> None:
        """Restore :meth:`get_state`'s output into the built optimizer. Arrays are
        written in place (a fused trainer may hold them); their number and shapes are
        checked before anything is written."""
        if self._be is None:
            raise RuntimeError("the optimizer is not built; compile a built model first")
        own = self.state_arrays()
        if len(arrays) != len(own):
            raise ValueError(f"{type(self).__name__} has {len(own)} state arrays, got {len(arrays)}")
        for i, (a, v) in enumerate(zip(own, arrays)):
            if tuple(np.shape(v)) != tuple(a.shape):
                raise ValueError(f"optimizer state array {i} must have shape {tuple(a.shape)}, "
                                 f"got {tuple(np.shape(v))}")
        for a, v in zip(own, arrays):
            a[...] = self._be.asarray(v)
        self.iterations = int(iterations)

    def __repr__(self) -> str:
        cfg = self.get_config() if not callable(self._learning_rate) or isinstance(
            self._learning_rate, LearningRateSchedule) else {"learning_rate": self._learning_rate}
        keep = {k: v for k, v in cfg.items() if k in _own_keys(type(self)) or k == "learning_rate"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in keep.items())})"


def _snake(name: str) -> str:
    """Keras' default object name: naming.to_snake_case of the class name ('adam_w', 'rm_sprop')."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


_BASE_KEYS = {"name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "use_ema",
              "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps"}


def _own_keys(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - _BASE_KEYS - {"self", "kwargs"}


def _common(kwargs: dict[str, Any]) -> dict[str, Any]:
    return kwargs


class SGD(Optimizer):
    """Gradient descent, Keras' rule: ``m = m*momentum - g*lr; w += m``; with
    ``nesterov``: ``w += m*momentum - g*lr``; without momentum: ``w -= g*lr``."""

    kind = "sgd"

    def __init__(self, learning_rate: Any = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.momentum = _check("momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def _slot_names(self) -> list[str]:
        return ["momentum"] if self.momentum else []

    def _kind_flags(self) -> int:
        return (MOMENTUM if self.momentum else 0) | (NESTEROV if self.nesterov else 0)

    def _fill(self, P, t, lr):
        P[:, P_A] = self.momentum

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam, Keras' rule (epsilon added to the *uncorrected* sqrt(v)):
    ``m += (g-m)(1-b1); v += (g^2-v)(1-b2); [amsgrad: v = v_hat = max(v_hat, v)];
    w -= m * lr*sqrt(1-b2^t)/(1-b1^t) / (sqrt(v) + epsilon)``."""

    kind = "adam"

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check("beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check("beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _check("epsilon", epsilon, 0.0)
        self.amsgrad = bool(amsgrad)

    def _slot_names(self) -> list[str]:
        return ["momentum", "velocity"] + (["velocity_hat"] if self.amsgrad else [])

    def _kind_flags(self) -> int:
        return AMSGRAD if self.amsgrad else 0

    def _fill(self, P, t, lr):
        b1, b2 = float(np.float32(self.beta_1)), float(np.float32(self.beta_2))
        P[:, P_A] = _f32(lr * np.sqrt(1.0 - np.power(b2, t)) / (1.0 - np.power(b1, t)))
        P[:, P_B] = 1 - self.beta_1
        P[:, P_C] = 1 - self.beta_2
        P[:, P_D] = self.epsilon

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}

    # the moment arrays under the names the fused trainer and older code used
    @property
    def _m(self) -> list[Any]:
        return self._slots[0]

    @property
    def _v(self) -> list[Any]:
        return self._slots[1]


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras' AdamW: Adam with ``weight_decay``
    defaulting to 0.004, applied as ``w -= w*wd*lr`` before each update)."""

    def __init__(self, learning_rate: Any = 0.001, weight_decay: float = 0.004, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False, **kwargs: Any) -> None:
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         weight_decay=weight_decay, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return super().get_config()  # weight_decay is among the common keys


class RMSprop(Optimizer):
    """RMSprop, Keras' rule: ``v = rho*v + (1-rho)*g^2``; centered: ``a = rho*a +
    (1-rho)*g``, denominator ``v - a^2 + eps`` (else ``v + eps``); ``inc = lr*g /
    sqrt(denominator)``; with momentum ``m = momentum*m + inc; w -= m``, else ``w -= inc``."""

    kind = "rmsprop"

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,
                 centered: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho = _check("rho", rho, 0.0, 1.0)
        self.momentum = _check("momentum", momentum, 0.0)
        self.epsilon = _check("epsilon", epsilon, 0.0)
        self.centered = bool(centered)

    def _slot_names(self) -> list[str]:
        # s1 velocity, s2 momentum, s3 average gradient: s2 kept (empty) when unused
        return ["velocity", "momentum", "average_gradient"]

    def build(self, be: Backend, params: list[Any], names: Sequence[str] | None = None) -> None:
        super().build(be, params, names)
        if not self.momentum:
            self._slots[1] = []
        if not self.centered:
            self._slots[2] = []

    def _kind_flags(self) -> int:
        return (MOMENTUM if self.momentum > 0 else 0) | (CENTERED if self.centered else 0)

    def _fill(self, P, t, lr):
        P[:, P_A] = self.rho
        P[:, P_B] = 1 - self.rho
        P[:, P_C] = self.epsilon
        P[:, P_D] = self.momentum

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad, Keras' rule: ``acc += g^2; w -= lr*g / sqrt(acc + epsilon)``, the
    accumulators starting at ``initial_accumulator_value``."""

    kind = "adagrad"

    def __init__(self, learning_rate: Any = 0.001, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = _check("initial_accumulator_value", initial_accumulator_value, 0.0)
        self.epsilon = _check("epsilon", epsilon, 0.0)

    def _slot_names(self) -> list[str]:
        return ["accumulator"]

    def _slot_init(self, k: int) -> float:
        return self.initial_accumulator_value

    def _fill(self, P, t, lr):
        P[:, P_A] = self.epsilon

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """Adadelta, Keras' rule: ``a = rho*a + (1-rho)*g^2; d = -sqrt(D + eps)*g /
    sqrt(a + eps); D = rho*D + (1-rho)*d^2; w += lr*d``."""

    kind = "adadelta"

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.95, epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho = _check("rho", rho, 0.0, 1.0)
        self.epsilon = _check("epsilon", epsilon, 0.0)

    def _slot_names(self) -> list[str]:
        return ["accumulated_grad", "accumulated_delta_var"]

    def _fill(self, P, t, lr):
        P[:, P_A] = self.rho
        P[:, P_B] = 1 - self.rho
        P[:, P_C] = self.epsilon

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adamax(Optimizer):
    """Adamax, Keras' rule: ``m += (g-m)(1-b1); u = max(b2*u, |g|);
    w -= lr*m / ((1-b1^t)(u + epsilon))``."""

    kind = "adamax"

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check("beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check("beta_2", beta_2, 0.0, 1.0)
        self.epsilon = _check("epsilon", epsilon, 0.0)

    def _slot_names(self) -> list[str]:
        return ["momentum", "norm"]

    def _fill(self, P, t, lr):
        b1 = float(np.float32(self.beta_1))
        P[:, P_A] = 1 - self.beta_1
        P[:, P_B] = self.beta_2
        P[:, P_C] = self.epsilon
        P[:, P_D] = 1.0 - np.power(b1, t)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Nadam(Optimizer):
    """Nadam, Keras' rule with the momentum schedule ``u_t = b1*(1 - 0.5*0.96^t)``
    and its running product: ``m_hat = u_{t+1}*m/(1 - prod_{t+1}) + (1-u_t)*g/(1 -
    prod_t)``, ``v_hat = v/(1-b2^t)``, ``w -= m_hat*lr / (sqrt(v_hat) + epsilon)``."""

    kind = "nadam"

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check("beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check("beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _check("epsilon", epsilon, 0.0)
        self._u_cache = (0, 1.0)  # (t, prod_{s<=t} u_s): Keras' _u_product, a function of the step count

    def _slot_names(self) -> list[str]:
        return ["momentum", "velocity"]

    def _u_product(self, t: int) -> float:
        t0, u = self._u_cache
        if t < t0:
            t0, u = 0, 1.0
        b1 = float(np.float32(self.beta_1))
        for s in range(t0 + 1, t + 1):
            u = u * b1 * (1.0 - 0.5 * 0.96 ** s)
        self._u_cache = (t, u)
        return u

    def _fill(self, P, t, lr):
        b1, b2 = float(np.float32(self.beta_1)), float(np.float32(self.beta_2))
        k = len(t)
        prod = np.empty(k)
        if k:
            u = self._u_product(int(t[0]) - 1)
            for j, s in enumerate(t):
                u = u * b1 * (1.0 - 0.5 * 0.96 ** int(s))
                prod[j] = u
        tf = t.astype(np.float64)
        u_t = b1 * (1.0 - 0.5 * np.power(0.96, tf))
        u_t1 = b1 * (1.0 - 0.5 * np.power(0.96, tf + 1))
        P[:, P_A] = np.float32(1) - np.float32(b1)
        P[:, P_B] = np.float32(1) - np.float32(b2)
        P[:, P_C] = self.epsilon
        P[:, P_D] = u_t1
        P[:, P_E] = 1.0 - prod * u_t1
        P[:, P_F] = 1.0 - u_t
        P[:, P_G] = 1.0 - prod
        P[:, P_H] = 1.0 - np.power(b2, tf)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Lion(Optimizer):
    """Lion, Keras' rule: ``w -= lr*sign(m*b1 + g*(1-b1)); m = m*b2 + g*(1-b2)``."""

    kind = "lion"

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.99, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        if not 0 < beta_1 <= 1:
            raise ValueError("Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer degenerates "
                             f"to SignSGD. Received: beta_1={beta_1}.")
        self.beta_1 = float(beta_1)
        self.beta_2 = _check("beta_2", beta_2, 0.0, 1.0)

    def _slot_names(self) -> list[str]:
        return ["momentum"]

    def _fill(self, P, t, lr):
        b1, b2 = np.float32(self.beta_1), np.float32(self.beta_2)
        P[:, P_A] = b1
        P[:, P_B] = np.float32(1) - b1
        P[:, P_C] = b2
        P[:, P_D] = np.float32(1) - b2

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


_ALIASES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
            "adadelta": Adadelta, "adamax": Adamax, "nadam": Nadam, "lion": Lion}


def get(identifier: str | dict | Optimizer) -> Optimizer:
    """An optimizer from its Keras name ('adam', 'sgd', 'rmsprop', 'adamw', 'nadam',
    'adagrad', 'adadelta', 'adamax', 'lion', any case, with default settings), a
    serialized ``{"class_name", "config"}`` dict, or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower())
        if cls is not None:
            return cls()
    raise ValueError(f"unknown optimizer {identifier!r}; valid: {', '.join(repr(k) for k in _ALIASES)} "
                     "or an Optimizer instance")


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of an optimizer's settings (not its state)."""
    return registry.serialize(optimizer, REGISTRY)


def deserialize(config: dict[str, Any], custom_objects: dict[str, type] | None = None) -> Optimizer:
    """A new optimizer with the settings :func:`serialize` described (your own classes
    by name once defined, or through ``custom_objects``, as in Keras)."""
    return registry.deserialize(config, REGISTRY, custom_objects)


# `fusednn.optimizers.schedules` (and `keras.optimizers.schedules`) as in Keras;
# also importable as a module path
sys.modules.setdefault(__name__ + ".schedules", schedules)
