"""Reading tabular data from CSV files with the standard library, with clear errors.

A file has one row per sample. Its first row is a header when any of its cells
is not a number (a file without a header names its columns 0, 1, 2, ...). The
delimiter (comma, semicolon or tab) is detected. Empty cells and NA, N/A, NaN,
null, None and ? are missing values (NaN); any other cell of a numeric column
that is not a number is an error naming its line and column.
"""
from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass

import numpy as np

from ..files import write_atomically

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})


class DataError(ValueError):
    """A problem with the user's data (the command line reports it and exits with 2)."""


@dataclass
class Table:
    """The cells of a CSV file as text: ``columns`` (header names, or '0', '1', ...
    without a header), ``rows`` (lists of cells) and each row's line number in the file."""

    path: str
    columns: list[str]
    rows: list[list[str]]
    lines: list[int]
    has_header: bool

    def index(self, column: str) -> int:
        """The position of ``column``: a header name, else a 0-based column number."""
        if column in self.columns:
            return self.columns.index(column)
        if column.lstrip("-").isdigit() and -len(self.columns) <= int(column) < len(self.columns):
            return int(column) % len(self.columns)
        raise DataError(f"{self.path}: no column {column!r}; the columns are: {', '.join(self.columns)}")

    def column_text(self, index: int) -> list[str]:
        """The stripped cells of one column."""
        return [row[index].strip() for row in self.rows]


def is_missing(cell: str) -> bool:
    """Whether a cell means 'no value'."""
    return cell.strip().lower() in MISSING


def is_number(cell: str) -> bool:
    """Whether a cell holds a number (inf and nan spelled out count as numbers)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_csv(path: str) -> Table:
    """Read ``path`` into a :class:`Table`; raises DataError for an empty file, a file
    with a header but no data, or rows whose cell count differs from the first row's."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            sample = f.read(65536)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:  # one column, or nothing to go by: plain commas
                dialect = csv.excel
            reader = csv.reader(f, dialect)
            rows, lines = [], []
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e})") from None
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from None
    if not rows:
        raise DataError(f"{path} is empty: expected a header row and one row per sample")
    width = len(rows[0])
    for row, line in zip(rows, lines):
        if len(row) != width:
            raise DataError(f"{path}, line {line}: {len(row)} cells, but the first row has {width}")
    has_header = any(not is_number(c) and not is_missing(c) for c in rows[0])
    columns = [c.strip() for c in rows[0]] if has_header else [str(i) for i in range(width)]
    if has_header:
        rows, lines = rows[1:], lines[1:]
        if not rows:
            raise DataError(f"{path} has a header but no data rows")
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            raise DataError(f"{path}: the header names columns more than once: {', '.join(dup)}")
    return Table(path, columns, rows, lines, has_header)


def numeric(table: Table, indices: list[int]) -> np.ndarray:
    """The columns at ``indices`` as a float64 array (rows, columns); missing cells
    are NaN, any other non-number raises DataError naming its line and column."""
    out = np.empty((len(table.rows), len(indices)), dtype=np.float64)
    for i, row in enumerate(table.rows):
        for j, k in enumerate(indices):
            cell = row[k].strip()
            try:
                out[i, j] = float(cell)
            except ValueError:
                if cell.lower() not in MISSING:
                    raise DataError(f"{table.path}, line {table.lines[i]}, column {table.columns[k]!r}: "
                                    f"{cell[:40]!r} is not a number (missing values may be empty, NA or NaN)"
                                    ) from None
                out[i, j] = math.nan
    return out


def write_csv(path: str, header: list[str], rows: list[list[object]]) -> None:
    """Write a header and rows to ``path`` whole or not at all ('-': standard output)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if path == "-":
        sys.stdout.write(text.getvalue())
    else:
        write_atomically(path, lambda f: f.write(text.getvalue().encode("utf-8")))
