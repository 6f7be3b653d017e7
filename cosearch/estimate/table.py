"""``table:PATH`` - accuracies looked up in a CSV (fidelity ``"table"``).

The CSV needs columns ``arch`` and ``accuracy`` (others are ignored). Arch
strings of the file and of the queries are canonicalised through the space, so
any spelling the space accepts matches. A missing arch is an error naming it
and the file, never a silent default.
"""

from __future__ import annotations

import csv
import math
import os
import time
from typing import TYPE_CHECKING, Any, ClassVar

from cosearch.errors import CosearchError
from cosearch.estimate.base import Estimate, Estimator

if TYPE_CHECKING:
    from cosearch.space.base import SearchSpace

REQUIRED = ("arch", "accuracy")


class TableEstimator(Estimator):
    name: ClassVar[str] = "table"
    fidelity: ClassVar[str] = "table"
    absolute: ClassVar[bool] = True

    def __init__(self, *, path: str | os.PathLike[str], seed: int | None = 0) -> None:
        path = os.fspath(path) if path is not None else ""
        if not path:
            raise CosearchError("table estimator needs a CSV path: table:PATH (columns arch,accuracy)")
        self.path = path
        self.seed = seed  # unused: a table is deterministic; kept for a uniform constructor
        self._rows = self._read(path)
        self._canon: dict[str, dict[str, float]] = {}

    @staticmethod
    def _read(path: str) -> list[tuple[int, str, float]]:
        try:
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                fields = [f.strip() for f in (reader.fieldnames or [])]
                missing = [c for c in REQUIRED if c not in fields]
                if missing:
                    raise CosearchError(
                        f"table {path!r} lacks column(s) {', '.join(missing)}; found {fields or '(no header)'}, "
                        f"required: {', '.join(REQUIRED)}"
                    )
                rows = []
                for lineno, row in enumerate(reader, start=2):
                    row = {(k or "").strip(): v for k, v in row.items()}
                    try:
                        acc = float(row["accuracy"])
                    except (TypeError, ValueError):
                        raise CosearchError(
                            f"table {path!r} line {lineno}: accuracy {row['accuracy']!r} is not a number"
                        ) from None
                    if not math.isfinite(acc):
                        raise CosearchError(f"table {path!r} line {lineno}: accuracy {acc!r} is not finite")
                    rows.append((lineno, (row["arch"] or "").strip(), acc))
        except OSError as e:
            raise CosearchError(f"cannot read table {path!r}: {e.strerror or e}") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise CosearchError(f"table {path!r} is not a readable CSV: {e}") from None
        return rows

    def _lookup(self, space: "SearchSpace") -> dict[str, float]:
        key = repr((space.name, sorted(space.config().items())))
        if key not in self._canon:
            table: dict[str, float] = {}
            for lineno, arch, acc in self._rows:
                try:
                    canon = space.canonical(arch)
                except CosearchError as e:
                    raise CosearchError(f"table {self.path!r} line {lineno}: {e}") from None
                table[canon] = acc
            self._canon[key] = table
        return self._canon[key]

    def estimate(self, space: "SearchSpace", arch: str) -> Estimate:
        t0 = time.perf_counter()
        canon = space.canonical(arch)
        table = self._lookup(space)
        if canon not in table:
            raise CosearchError(f"arch {canon!r} is not in table {self.path!r} ({len(table)} archs)")
        acc = table[canon]
        return Estimate(arch=canon, score=acc, signals={"accuracy": acc},
                        seconds=time.perf_counter() - t0, fidelity=self.fidelity)

    def config(self) -> dict[str, Any]:
        return {"estimator": "table", "fidelity": self.fidelity, "path": os.path.abspath(self.path)}
