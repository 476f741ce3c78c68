"""Synthetic sensor data of a hub's pump station: the golden set, its drifted variant and the
training data of the example anomaly detector (candidates/ml-*).

Every row is one sensor message: motor temperature (°C), relative humidity (%) in the pump
housing and pump current (A), with a label (1 = anomaly) and the kind of operation that made
it. Normal operation is a correlated Gaussian around a duty point; four failure modes make
the anomalies (about 8 % of the rows):

- overheat: a failing bearing or blocked cooling: temperature 60-75 °C, current a little high;
- dry_run: the pump runs without water: current 1.0-2.5 A, temperature a little high;
- overcurrent: a jammed impeller: current 6-8 A, temperature high;
- leak: water in the housing: humidity 85-99 %.

A part of each failure mode overlaps normal operation (onsets of a fault), so no model is
perfect on it. The drifted variant is the same plant in summer: the ambient is 9 °C warmer
and 20 % more humid, with the same anomaly mix; a model trained on the clean plant should
raise its drift signal on it.

Everything comes from numpy's PCG64 generator seeded with the given seed: the same seed gives
the same rows on any machine (numpy's Generator streams are stable across releases for
these distributions). The checked-in sets were made with

    python ml/sensors.py golden  --seed 20261201 --rows 3000 > suites/ml/data/golden.csv
    python ml/sensors.py drifted --seed 20261202 --rows 1500 > suites/ml/data/drifted.csv

and the training data (not checked in) is ``generate(seed=7, rows=...)`` in ml/train.py.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from typing import TextIO

import numpy as np

FEATURES = ("temperature_c", "humidity_pct", "pump_current_a")
ANOMALY_RATE = 0.08
KINDS = ("overheat", "dry_run", "overcurrent", "leak")


@dataclass(frozen=True)
class Plant:
    """The plant's normal duty point: means and spreads of the three sensors."""

    temperature_c: float = 45.0
    humidity_pct: float = 55.0
    pump_current_a: float = 4.0


CLEAN = Plant()
SUMMER = Plant(temperature_c=54.0, humidity_pct=66.0, pump_current_a=4.0)


def _normal(rng: np.random.Generator, n: int, plant: Plant) -> np.ndarray:
    # temperature and current move together (load), humidity on its own
    cov = np.array([[9.0, 0.0, 0.45], [0.0, 36.0, 0.0], [0.45, 0.0, 0.09]])
    mean = np.array([plant.temperature_c, plant.humidity_pct, plant.pump_current_a])
    return rng.multivariate_normal(mean, cov, size=n, method="cholesky")


def _anomalies(rng: np.random.Generator, kinds: np.ndarray, plant: Plant) -> np.ndarray:
    out = _normal(rng, len(kinds), plant)
    dt = plant.temperature_c - CLEAN.temperature_c
    for i, kind in enumerate(kinds):
        onset = rng.random() < 0.12  # the fault is only beginning: close to normal
        if kind == "overheat":
            out[i, 0] = (rng.uniform(53.0, 57.0) if onset else rng.uniform(60.0, 75.0)) + dt
            out[i, 2] += rng.uniform(0.1, 0.6)
        elif kind == "dry_run":
            out[i, 2] = rng.uniform(2.9, 3.3) if onset else rng.uniform(1.0, 2.5)
            out[i, 0] += rng.uniform(1.0, 5.0)
        elif kind == "overcurrent":
            out[i, 2] = rng.uniform(4.8, 5.1) if onset else rng.uniform(6.0, 8.0)
            out[i, 0] += rng.uniform(3.0, 9.0)
        else:  # leak
            out[i, 1] = rng.uniform(72.0, 76.0) if onset else rng.uniform(85.0, 99.0)
    return out


def generate(*, seed: int, rows: int, plant: Plant = CLEAN, anomaly_rate: float = ANOMALY_RATE,
             kinds: tuple[str, ...] = KINDS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X float64 [rows, 3], y int64 [rows], kind per row), shuffled."""
    rng = np.random.Generator(np.random.PCG64(seed))
    n_anom = round(rows * anomaly_rate)
    n_norm = rows - n_anom
    anom_kinds = np.array([kinds[i % len(kinds)] for i in range(n_anom)])
    X = np.vstack([_normal(rng, n_norm, plant), _anomalies(rng, anom_kinds, plant)])
    y = np.concatenate([np.zeros(n_norm, dtype=np.int64), np.ones(n_anom, dtype=np.int64)])
    kind = ["normal"] * n_norm + [str(k) for k in anom_kinds]
    X[:, 1] = np.clip(X[:, 1], 0.0, 100.0)
    X[:, 2] = np.clip(X[:, 2], 0.0, None)
    order = rng.permutation(rows)
    return np.round(X[order], 3), y[order], [kind[i] for i in order]


def write_csv(out: TextIO, X: np.ndarray, y: np.ndarray, kind: list[str]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["row", *FEATURES, "label", "kind"])
    for i, (x, label, k) in enumerate(zip(X, y, kind, strict=True)):
        w.writerow([i, *(f"{v:.3f}" for v in x), int(label), k])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variant", choices=("golden", "drifted", "training"))
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--rows", type=int, required=True)
    args = ap.parse_args(argv)
    plant = SUMMER if args.variant == "drifted" else CLEAN
    write_csv(sys.stdout, *generate(seed=args.seed, rows=args.rows, plant=plant))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
