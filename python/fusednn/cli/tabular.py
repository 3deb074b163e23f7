"""Training, evaluating and applying a model on a CSV table: ``fusednn train``,
``fusednn evaluate`` and ``fusednn predict``.

``train`` reads the table, drops rows with missing or non-finite values (and,
on request, outliers) with :func:`fusednn.preprocessing.clean`, holds out a test
split (:func:`~fusednn.preprocessing.train_test_split`, stratified for
classification), fits a :class:`~fusednn.preprocessing.StandardScaler` on the
training features, trains a Dense network behind a
:class:`~fusednn.layers.Normalization` layer holding that scaler's statistics,
prints the test metrics and saves the model. So the saved model takes raw
feature values: ``load_model(path).predict(raw)`` scales them exactly as in
training, and so do ``evaluate``, ``predict`` and ``fusednn serve``.

- Regression (one target column): the target is standardised for training and
  the scaling is folded into the last layer's weights afterwards, so the model
  outputs the target's own units. Metrics: MSE, MAE, R².
- Classification: the target's distinct values are the classes (numbers or
  text), the model ends in a softmax over them and trains with sparse
  categorical cross-entropy; the class labels are saved in ``model.metadata``
  and predictions are written as labels. Metrics: accuracy and macro-averaged
  precision, recall and F1.

The task is classification when the target has text values, or integer values
with at most 20 distinct ones; ``task=`` overrides that.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import metrics as M
from ..layers import Dense, Normalization
from ..preprocessing import StandardScaler, clean, train_test_split
from .csv_data import DataError, Table, is_missing, is_number, numeric, read_csv, write_csv

MAX_CLASSES_INFERRED = 20


@dataclass
class TrainConfig:
    """The settings of ``fusednn train`` (see its --help)."""

    target: str
    task: str | None = None
    layers: tuple[int, ...] = (64, 64)
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-3
    validation_split: float = 0.1
    test_size: float = 0.2
    seed: int = 0
    outliers: str | None = None
    verbose: int | str = "auto"


def _label(cell: str) -> str:
    """A class label's canonical text: numbers by value ('1', '1.0' and '01' are one class)."""
    if is_number(cell):
        v = float(cell)
        return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)
    return cell


def _label_value(text: str) -> Any:
    """The JSON value saved for a class label: a number when it is one."""
    if is_number(text):
        v = float(text)
        return int(v) if v.is_integer() and abs(v) < 2**53 else v
    return text


def infer_task(cells: list[str]) -> tuple[str, str]:
    """('classification' | 'regression', why) for a target column's cells."""
    present = [c for c in cells if not is_missing(c)]
    if not present:
        raise DataError("the target column has no values")
    text = [c for c in present if not is_number(c)]
    if text:
        return "classification", f"the target has text values such as {text[0][:30]!r}"
    values = {float(c) for c in present}
    if all(math.isfinite(v) and v.is_integer() for v in values) and 2 <= len(values) <= MAX_CLASSES_INFERRED:
        return "classification", f"the target has {len(values)} distinct integer values"
    return "regression", "the target has " + (f"{len(values)} distinct values" if len(values) > MAX_CLASSES_INFERRED
                                              else "non-integer values")


def _features(table: Table, target: int) -> list[int]:
    return [k for k in range(len(table.columns)) if k != target]


def _report_clean(report: Any, table: Table, rows: np.ndarray | None = None) -> str:
    lines = np.asarray(table.lines) if rows is None else np.asarray(table.lines)[rows]
    parts = []
    for what, removed in (("with missing or non-finite values", report.nonfinite_rows),
                          ("of outliers", report.outlier_rows)):
        if len(removed):
            shown = ", ".join(map(str, lines[removed[:8]])) + (", ..." if len(removed) > 8 else "")
            parts.append(f"{len(removed)} rows {what} (lines {shown})")
    return "dropped " + " and ".join(parts) if parts else "no rows dropped"


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MSE, MAE and R² of predictions against targets."""
    return {"mse": float(M.mean_squared_error(y, pred)), "mae": float(M.mean_absolute_error(y, pred)),
            "r2": float(M.r2_score(y, pred))}


def classification_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1 of class indices."""
    kw = {"average": "macro", "zero_division": 0}
    return {"accuracy": float(M.accuracy_score(y, pred)), "precision": float(M.precision_score(y, pred, **kw)),
            "recall": float(M.recall_score(y, pred, **kw)), "f1": float(M.f1_score(y, pred, **kw))}


def format_metrics(values: dict[str, float]) -> str:
    """'mse 0.0123  mae 0.0456  r2 0.9870'."""
    names = {"r2": "R²"}
    return "  ".join(f"{names.get(k, k)} {v:.4f}" for k, v in values.items())


def train(data_path: str, out_path: str, cfg: TrainConfig) -> dict[str, Any]:
    """Train on the CSV at ``data_path`` and save the model to ``out_path`` (see the
    module docstring); prints progress and returns the test metrics."""
    import fusednn
    from fusednn import keras

    table = read_csv(data_path)
    target = table.index(cfg.target)
    features = _features(table, target)
    if not features:
        raise DataError(f"{data_path}: the target {table.columns[target]!r} is the only column; no features left")
    cells = table.column_text(target)
    task, why = infer_task(cells)
    if cfg.task is not None:
        task, why = cfg.task, "as requested"
    print(f"{data_path}: {len(table.rows)} rows, {len(features)} features, target {table.columns[target]!r}; "
          f"task: {task} ({why})")
    x = numeric(table, features)
    classes: list[str] = []
    if task == "classification":
        labels = [None if is_missing(c) else _label(c) for c in cells]
        numbers = all(is_number(c) for c in labels if c is not None)
        classes = sorted({c for c in labels if c is not None}, key=(lambda c: float(c)) if numbers else None)
        if len(classes) < 2:
            raise DataError(f"{data_path}: classification needs at least 2 classes in the target, found {classes}")
        position = {c: i for i, c in enumerate(classes)}
        y = np.array([math.nan if c is None else position[c] for c in labels], dtype=np.float64)
    else:
        y = numeric(table, [target])[:, 0]
    x, y, report = clean(x, y, nonfinite="drop", outliers=cfg.outliers)
    print(f"cleaning: {_report_clean(report, table)}; {len(x)} rows left")
    stratify = None
    if task == "classification":
        counts = np.bincount(y.astype(int), minlength=len(classes))
        stratify = y if counts.min() >= 2 else None
    try:
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=cfg.test_size, random_state=cfg.seed,
                                                            stratify=stratify)
    except ValueError as e:
        raise DataError(f"{data_path}: cannot split {len(x)} rows into training and test sets: {e}") from None
    scaler = StandardScaler().fit(x_train)

    fusednn.set_random_seed(cfg.seed)
    model = keras.Sequential([Normalization.from_scaler(scaler, input_shape=(len(features),))],
                             name=os.path.splitext(os.path.basename(out_path))[0] or None)
    for units in cfg.layers:
        model.add(Dense(units, activation="relu"))
    if task == "classification":
        model.add(Dense(len(classes), activation="softmax"))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        fit_y = y_train
    else:
        model.add(Dense(1))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate), loss="mse")
        mean, std = float(y_train.mean()), float(y_train.std()) or 1.0
        fit_y = (y_train - mean) / std
    print(f"training on {len(x_train)} rows ({cfg.validation_split:g} of them for validation), testing on "
          f"{len(x_test)}; layers {', '.join(map(str, cfg.layers)) or 'none'}; {fusednn.get_backend().name} backend")
    model.fit(x_train, fit_y, batch_size=cfg.batch_size, epochs=cfg.epochs, validation_split=cfg.validation_split,
              verbose=cfg.verbose)
    if task == "regression":
        _fold_target_scaling(model.layers[-1], mean, std)
    pred = model.predict(x_test, verbose=0)
    scores = (classification_metrics(y_test.astype(int), pred.argmax(axis=1)) if task == "classification"
              else regression_metrics(y_test, pred[:, 0]))
    print(f"test ({len(x_test)} rows): {format_metrics(scores)}")
    model.metadata = {"task": task, "target": table.columns[target],
                      "features": [table.columns[k] for k in features], "has_header": table.has_header,
                      "test_metrics": scores, "trained_on": os.path.basename(data_path)}
    if task == "classification":
        model.metadata["classes"] = [_label_value(c) for c in classes]
    # The file is for prediction: the optimizer state would not match the folded last layer.
    model.save(out_path, include_optimizer=False)
    print(f"saved {out_path}")
    return scores


def _fold_target_scaling(layer: Dense, mean: float, std: float) -> None:
    """Make a linear output layer trained on (y - mean) / std output y itself."""
    kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
    layer.set_weights([kernel * std, bias * std + mean])


def _model_columns(model: Any, table: Table, need_target: bool) -> tuple[list[int], int | None]:
    """Feature column positions (by the names saved with the model) and the target's."""
    meta = model.metadata
    names, target = meta.get("features"), meta.get("target")
    if not isinstance(names, list) or not isinstance(target, str):
        raise DataError("the model was not saved by `fusednn train` (its metadata names no features and target)")
    if table.has_header:
        missing = [n for n in names if n not in table.columns]
        if missing:
            raise DataError(f"{table.path}: the model needs the columns {', '.join(map(repr, missing))}, which the "
                            f"file lacks (its columns: {', '.join(table.columns)})")
        features = [table.columns.index(n) for n in names]
        t = table.columns.index(target) if target in table.columns else None
    else:  # no header: the training file's column order, with or without the target column
        t_train = int(target)
        if len(table.columns) == len(names) + 1:
            features, t = [k for k in range(len(table.columns)) if k != t_train], t_train
        elif len(table.columns) == len(names):
            features, t = list(range(len(names))), None
        else:
            raise DataError(f"{table.path}: {len(table.columns)} columns and no header; the model takes "
                            f"{len(names)} features")
    if need_target and t is None:
        raise DataError(f"{table.path}: no target column {target!r} to evaluate against")
    return features, t


def _rows_ok(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x).all(axis=1)


def evaluate(model_path: str, data_path: str) -> dict[str, float]:
    """The saved model's metrics on a labelled CSV (rows with missing values are
    dropped and reported); prints and returns them."""
    from ..saving import load_model

    model = load_model(model_path, compile=False)
    table = read_csv(data_path)
    features, t = _model_columns(model, table, need_target=True)
    x = numeric(table, features)
    task = model.metadata.get("task")
    if task == "classification":
        classes = [_label(str(c)) for c in model.metadata["classes"]]
        position = {c: i for i, c in enumerate(classes)}
        # a label the model never saw counts as a class it cannot predict (-1)
        y = np.array([math.nan if is_missing(c) else position.get(_label(c), -1) for c in table.column_text(t)])
    else:
        y = numeric(table, [t])[:, 0]
    keep = _rows_ok(x) & np.isfinite(y)
    dropped = np.flatnonzero(~keep)
    if dropped.size:
        shown = ", ".join(str(table.lines[i]) for i in dropped[:8]) + (", ..." if dropped.size > 8 else "")
        print(f"dropped {dropped.size} rows with missing or non-finite values (lines {shown})")
    if not keep.any():
        raise DataError(f"{data_path}: no complete rows to evaluate")
    pred = model.predict(x[keep], verbose=0)
    scores = (classification_metrics(y[keep].astype(int), pred.argmax(axis=1)) if task == "classification"
              else regression_metrics(y[keep], pred[:, 0]))
    print(f"{data_path} ({int(keep.sum())} rows): {format_metrics(scores)}")
    return scores


def predict(model_path: str, data_path: str, out_path: str) -> int:
    """Write the saved model's predictions for each row of a CSV to ``out_path``: a
    'prediction' column (the class label for classification, then one probability
    column per class); rows with missing values get empty cells. Returns the number
    of rows predicted."""
    from ..saving import load_model

    model = load_model(model_path, compile=False)
    table = read_csv(data_path)
    features, _ = _model_columns(model, table, need_target=False)
    x = numeric(table, features)
    keep = _rows_ok(x)
    pred = model.predict(x[keep], verbose=0) if keep.any() else np.empty((0, model.output_shape[1]), np.float32)
    classes = model.metadata.get("classes") if model.metadata.get("task") == "classification" else None
    header = ["prediction"] + ([f"probability_{c}" for c in classes] if classes else [])
    rows: list[list[Any]] = []
    it = iter(pred)
    for ok in keep:
        if not ok:
            rows.append([""] * len(header))
            continue
        p = next(it)
        if classes:
            rows.append([classes[int(p.argmax())], *map(str, p)])
        else:
            rows.append([str(p[0])])  # a float32's shortest text that reads back as the same float32
    write_csv(out_path, header, rows)
    if not keep.all():
        print(f"{int((~keep).sum())} rows with missing or non-finite values got no prediction", file=sys.stderr)
    return int(keep.sum())
