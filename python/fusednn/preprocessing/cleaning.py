"""Cleaning: :func:`clean` drops or imputes non-finite values and drops outliers, and
reports (:class:`CleanReport`) which rows went and why."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arrays import to_host as _host

__all__ = ["CleanReport", "clean"]


@dataclass(frozen=True)
class CleanReport:
    """What :func:`clean` did. Row numbers are positions in the input. ``kept``: the
    input rows returned, in order (use it to filter other arrays the same way);
    ``nonfinite_rows``: removed for a NaN/inf in x or y; ``outlier_rows``: removed as
    outliers; ``imputed``: (k, 2) array of [row, column] cells of x replaced by the
    column median."""

    n_samples_in: int
    kept: np.ndarray
    nonfinite_rows: np.ndarray
    outlier_rows: np.ndarray
    imputed: np.ndarray

    @property
    def removed(self) -> np.ndarray:
        """All removed rows, sorted."""
        return np.union1d(self.nonfinite_rows, self.outlier_rows)

    @property
    def n_removed(self) -> int:
        """How many rows were removed."""
        return len(self.removed)

    def __str__(self) -> str:
        return (
            f"clean: kept {len(self.kept)} of {self.n_samples_in} rows; removed "
            f"{len(self.nonfinite_rows)} with non-finite values, {len(self.outlier_rows)} outliers; "
            f"imputed {len(self.imputed)} cells"
        )


def _nonfinite_mask(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "fc":
        return ~np.isfinite(a)
    return np.zeros(a.shape, dtype=bool)


def _outlier_rows(x: np.ndarray, valid: np.ndarray, method: str, z_thresh: float, iqr_k: float) -> np.ndarray:
    """Rows with a valid cell outside the column's bounds; statistics use valid cells only."""
    data = np.where(valid, x, np.nan).astype(np.float64)
    flagged = np.zeros(x.shape, dtype=bool)
    usable = valid.any(axis=0)
    if not usable.any():
        return flagged.any(axis=1)
    d = data[:, usable]
    with np.errstate(invalid="ignore"):
        if method == "zscore":
            mean, std = np.nanmean(d, axis=0), np.nanstd(d, axis=0)
            # A constant column has std 0: nothing in it is an outlier.
            out = (np.abs(d - mean) > z_thresh * std) & (std > 0)
        else:
            q1, q3 = np.nanpercentile(d, [25, 75], axis=0)
            spread = iqr_k * (q3 - q1)
            out = (d < q1 - spread) | (d > q3 + spread)
    flagged[:, usable] = out & valid[:, usable]
    return flagged.any(axis=1)


def clean(
    x: Any,
    y: Any = None,
    *,
    nonfinite: str = "drop",
    outliers: str | None = None,
    z_thresh: float = 3.0,
    iqr_k: float = 1.5,
) -> tuple[np.ndarray, np.ndarray | None, CleanReport]:
    """Remove or repair bad rows of ``x`` (n_samples, ...) and the matching rows of
    ``y``; returns ``(x_clean, y_clean, report)`` (``y_clean`` None when ``y`` is).
    ``nonfinite``: 'drop' removes rows with a NaN/inf in x or y; 'impute' replaces
    NaN/inf in x by the median of that column's finite values (rows with a non-finite
    target are still dropped: targets are never invented); 'raise' raises ValueError
    naming the first bad row and column. ``outliers``: None keeps all rows; 'zscore'
    drops rows with a value more than ``z_thresh`` population standard deviations from
    its column mean; 'iqr' drops rows with a value outside [Q1 - iqr_k*IQR, Q3 +
    iqr_k*IQR]. Outlier statistics are computed once, per column of x, over the finite
    values of the rows left after the non-finite step; imputed cells are never outliers.
    The :class:`CleanReport` lists the rows removed and why."""
    if nonfinite not in ("drop", "impute", "raise"):
        raise ValueError(f"nonfinite must be 'drop', 'impute' or 'raise', got {nonfinite!r}")
    if outliers not in (None, "zscore", "iqr"):
        raise ValueError(f"outliers must be None, 'zscore' or 'iqr', got {outliers!r}")
    if z_thresh <= 0 or iqr_k < 0:
        raise ValueError(f"z_thresh must be > 0 and iqr_k >= 0, got {z_thresh} and {iqr_k}")
    x = _host(x)
    if x.ndim == 0 or x.dtype.kind not in "biuf":
        raise ValueError(f"x must be a numeric array of samples, got dtype {x.dtype} and shape {x.shape}")
    n = len(x)
    x2 = x.reshape(n, -1)
    y_arr = None if y is None else _host(y)
    if y_arr is not None and len(y_arr) != n:
        raise ValueError(f"x and y have different lengths: {n} != {len(y_arr)}")

    bad_x = _nonfinite_mask(x2)
    bad_y = np.zeros(n, dtype=bool) if y_arr is None else _nonfinite_mask(y_arr.reshape(n, -1)).any(axis=1)
    if nonfinite == "raise":
        if bad_x.any():
            r, c = np.argwhere(bad_x)[0]
            raise ValueError(f"x has a non-finite value ({x2[r, c]}) at row {r}, column {c}")
        if bad_y.any():
            r = int(np.argmax(bad_y))
            raise ValueError(f"y has a non-finite value at row {r}")
    drop_nonfinite = bad_y | (bad_x.any(axis=1) if nonfinite == "drop" else False)

    rows = np.flatnonzero(~drop_nonfinite)
    x_rows = x2[rows]
    valid = ~bad_x[rows]
    imputed = np.empty((0, 2), dtype=np.int64)
    if nonfinite == "impute" and not valid.all():
        need = ~valid.all(axis=0)
        empty = np.flatnonzero(need & ~valid.any(axis=0))
        if empty.size:
            raise ValueError(f"column {empty[0]} of x has no finite value to impute from")
        medians = np.zeros(x_rows.shape[1])
        medians[need] = np.nanmedian(np.where(valid, x_rows, np.nan)[:, need], axis=0)
        x_rows = np.where(valid, x_rows, medians)
        cells = np.argwhere(~valid)
        imputed = np.column_stack([rows[cells[:, 0]], cells[:, 1]])

    is_outlier = np.zeros(len(rows), dtype=bool)
    if outliers is not None:
        is_outlier = _outlier_rows(x_rows, valid, outliers, z_thresh, iqr_k)
    keep = ~is_outlier
    report = CleanReport(
        n_samples_in=n,
        kept=rows[keep],
        nonfinite_rows=np.flatnonzero(drop_nonfinite),
        outlier_rows=rows[is_outlier],
        imputed=imputed,
    )
    x_clean = x_rows[keep].reshape((-1,) + x.shape[1:])
    y_clean = None if y_arr is None else y_arr[report.kept]
    return x_clean, y_clean, report
