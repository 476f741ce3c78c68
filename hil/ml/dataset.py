"""A labelled data set (CSV: row, one column per feature, label, kind), e.g. the golden set."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from hil.errors import UserError


@dataclass(frozen=True)
class LabelledSet:
    name: str
    features: tuple[str, ...]
    rows: tuple[tuple[float, ...], ...]
    labels: tuple[int, ...]
    kinds: tuple[str, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def anomalies(self) -> int:
        return sum(self.labels)


def read_set(path: Path, features: list[str] | tuple[str, ...]) -> LabelledSet:
    data = path.read_bytes()
    text = data.decode("utf-8").splitlines()
    reader = csv.DictReader(text)
    missing = [f for f in (*features, "label") if f not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"data set lacks the column(s) {', '.join(missing)}", file=str(path))
    rows, labels, kinds = [], [], []
    for n, rec in enumerate(reader, start=2):
        try:
            rows.append(tuple(float(rec[f]) for f in features))
            labels.append(int(rec["label"]))
        except (TypeError, ValueError):
            raise UserError(f"line {n}: not a number", file=str(path)) from None
        kinds.append(rec.get("kind") or "")
    return LabelledSet(path.stem, tuple(features), tuple(rows), tuple(labels), tuple(kinds),
                       hashlib.sha256(data).hexdigest())
