"""Table export shared by the developer tools' results, and the error measures they report.

Every result holds a list of flat records (one ``dict`` per run, plain ``str``/``int``/``float``/``bool``/``None``
values), so ``pandas.DataFrame(result.to_records())`` works without pysciml depending on pandas. ``to_csv``
writes them with the :mod:`csv` module (floats with ``repr``, so nothing is lost) and :func:`read_csv` reads such
a file back into the same records.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError

__all__ = ["ERROR_MEASURES", "Records", "measure_error", "read_csv"]

Tensor = torch.Tensor
ERROR_MEASURES = ("final", "l2", "max")
"""``"final"``: max over components of ``|u - ref|`` at the last save time; ``"l2"``: root mean square of
``|u - ref|`` over every save time and component; ``"max"``: its maximum over them."""


class Records:
    """Mixin: ``self.records`` (a list of flat dicts) exported as records and CSV."""

    records: list[dict[str, Any]]

    def to_records(self) -> list[dict[str, Any]]:
        """The table as a list of dicts (copies), one per run: ``pandas.DataFrame(result.to_records())``."""
        return [dict(r) for r in self.records]

    def to_csv(self, path: str | Path) -> Path:
        """Write the records to ``path`` as CSV (header from the first record's keys). Returns the path."""
        path = Path(path)
        fields = list(self.records[0]) if self.records else []
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            for r in self.records:
                writer.writerow({k: _cell(v) for k, v in r.items()})
        return path


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _parse(s: str) -> Any:
    if s == "":
        return None
    if s in ("True", "False"):
        return s == "True"
    for kind in (int, float):
        try:
            return kind(s)
        except ValueError:
            pass
    return s


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a file written by ``to_csv`` back into records (numbers, booleans and ``None`` restored)."""
    with Path(path).open(newline="") as fh:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


ErrorMeasure = str | Callable[[Tensor, Tensor], float]


def check_measure(error: Any) -> None:
    """An :class:`InputError` unless ``error`` is one of :data:`ERROR_MEASURES` or a callable."""
    if not callable(error) and error not in ERROR_MEASURES:
        raise InputError(f"error={error!r} must be one of {', '.join(map(repr, ERROR_MEASURES))} or a callable "
                         "error(u, ref) -> float on (S, N) float64 tensors")


def measure_error(u: Tensor, ref: Tensor, error: ErrorMeasure) -> float:
    """The error of states ``u`` ``(S, N)`` against ``ref`` (``(S, N)``, or ``(1, N)``: the final time only).

    ``error``: one of :data:`ERROR_MEASURES`, or a callable ``error(u, ref) -> float`` receiving the rows that
    the reference covers.
    """
    if ref.shape[0] != u.shape[0]:
        if error in ("l2", "max"):
            raise InputError(f"error={error!r} needs the reference at every save time; it was given at the final "
                             "time only: pass error='final' or a reference at every save time")
        u = u[-1:]
    if callable(error):
        return float(error(u, ref))
    diff = (u - ref).abs()
    if error == "final":
        return float(diff[-1].max())
    if error == "max":
        return float(diff.max())
    return math.sqrt(float((diff * diff).mean()))
