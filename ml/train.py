"""Train the example anomaly detectors of candidates/ml-* reproducibly and write their
candidate files: the ONNX model (artifact), the recipe's artifact digest and the model card.

    python -m venv /tmp/ml-train && /tmp/ml-train/bin/pip install --require-hashes -r ml/requirements.lock
    /tmp/ml-train/bin/python ml/train.py          # writes candidates/ml-{good,regressed,slow,tampered}
    /tmp/ml-train/bin/python ml/train.py --check  # trains again, changes nothing, exits 1 on any difference

Reproducible: fixed seeds (data and models), single-threaded fitting, fixed string hashing
(PYTHONHASHSEED=0: skl2onnx names nodes in set order), pinned versions
(ml/requirements.lock), and an ONNX file with no time stamps or host names in it, so the
same lock gives byte-identical models (the same SHA-256 digest) on any x86-64 machine.

The models (features: temperature_c, humidity_pct, pump_current_a; output: P(anomaly)):

- ml-good: a random forest of 40 trees (depth <= 8), threshold 0.5;
- ml-regressed: the same forest trained on data from which a pipeline bug dropped every
  dry-run example: it misses dry runs (lower recall);
- ml-slow: k-nearest neighbours (k = 9, distance-weighted) over 4000 reference rows,
  threshold 0.3: as good as the forest on the golden set, but every inference compares the
  message with all 4000 rows (two to three orders of magnitude slower);
- ml-tampered: ml-good's recipe and card with a model file changed by one byte after its
  digest was taken (the hub must refuse it).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sensors import FEATURES, generate

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "suites" / "ml" / "data" / "golden.csv"
COMPONENT = "com.hbs.hub.AnomalyDetector"
MODEL_FILE = "model.onnx"
MODEL_NAME = "pump-anomaly"
TRAIN_SEED = 7
TRAIN_ROWS = 12000
OPSET = 17
IMAGE = ("registry.lab:5000/hil/ml-infer"
         "@sha256:8207525cfa679565fe6e8ee99a35e12032465f2edf2a6d1c56567a93baaffdd0")
"""The detector image (lab/hil_lab/images/ml-infer), pinned by the digest of its reproducible
form (lab/hil_lab/oci.py): `hil lab up` pushes it under exactly this digest (tests/lab/test_ml_gate.py
names the digest it got when the image's inputs changed)."""
COMPOSE = """\
# The anomaly detector: the model file (an artifact of this component, digest-checked by the
# nucleus) mounted read-only into the detector image from the lab registry, pinned by digest.
# The container reaches the hub's broker (mutual TLS with the hub's device identity) by the
# hub's name, which the Startup script passes in; nothing of the host is shared but those files.
# Written by ml/train.py.
version: "3.7"
services:
  detector:
    image: {image}
    environment:
      HBS_BROKER_HOST: "${{HBS_HUB_NAME:?the Startup script sets HBS_HUB_NAME}}"
      HBS_BROKER_PORT: "8883"
      HBS_MODEL: /model/model.onnx
      HBS_CERT_DIR: /certs
      HBS_DRIFT_ENABLED: "${{HBS_DRIFT_ENABLED:-true}}"
      HBS_HEALTH_PERIOD_S: "2"
    extra_hosts:
      - "${{HBS_HUB_NAME}}:host-gateway"
    volumes:
      - ./model.onnx:/model/model.onnx:ro
      - /etc/hil/device:/certs:ro
    labels:
      com.hbs.release: "{version}"
    read_only: true
    cap_drop: [ALL]
    security_opt: ["no-new-privileges:true"]
    restart: unless-stopped
    stop_grace_period: 5s
"""
# what the component watches for drift (also written into the model, read by the component)
DRIFT = {"window": 200, "z_threshold": 0.5, "min_messages": 100}


@dataclass(frozen=True)
class Spec:
    candidate: str
    version: str
    summary: str
    threshold: float
    tamper: bool = False


SPECS = (
    Spec("ml-good", "1.0.0", "random forest, 40 trees, depth <= 8", 0.5),
    Spec("ml-regressed", "1.1.0", "random forest, 40 trees, trained without dry-run examples", 0.5),
    Spec("ml-slow", "1.1.0", "k-nearest neighbours (k=9) over 4000 reference rows", 0.3),
    Spec("ml-tampered", "1.0.1", "ml-good's model, changed by one byte after its digest was taken", 0.5,
         tamper=True),
)


def training_data() -> tuple[np.ndarray, np.ndarray, list[str]]:
    return generate(seed=TRAIN_SEED, rows=TRAIN_ROWS)


def fit(spec: Spec, X: np.ndarray, y: np.ndarray, kind: list[str]) -> tuple[ClassifierMixin, np.ndarray]:
    """The fitted model and the rows it was trained on (for the card's statistics)."""
    if spec.candidate == "ml-slow":
        Xs, ys, _ = generate(seed=8, rows=4000)
        knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=9, weights="distance"))
        return knn.fit(Xs, ys), Xs
    if spec.candidate == "ml-regressed":
        keep = np.array([k != "dry_run" for k in kind])  # the pipeline bug
        X, y = X[keep], y[keep]
    forest = RandomForestClassifier(n_estimators=40, max_depth=8, min_samples_leaf=3,
                                    random_state=TRAIN_SEED, n_jobs=1)
    return forest.fit(X, y), X


def to_onnx_bytes(model: ClassifierMixin, spec: Spec, stats: dict[str, Any]) -> bytes:
    from skl2onnx import to_onnx

    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    onx = to_onnx(model, np.zeros((1, len(FEATURES)), dtype=np.float32),
                  options={id(final): {"zipmap": False}}, target_opset=OPSET)
    onx.graph.name = MODEL_NAME
    onx.doc_string = f"{MODEL_NAME} {spec.version}: {spec.summary}"
    onx.model_version = int(spec.version.replace(".", ""))
    meta = {"hbs.model.name": MODEL_NAME, "hbs.model.version": spec.version,
            "hbs.features": json.dumps(list(FEATURES)), "hbs.threshold": repr(spec.threshold),
            "hbs.training.mean": json.dumps([stats[f]["mean"] for f in FEATURES]),
            "hbs.training.std": json.dumps([stats[f]["std"] for f in FEATURES]),
            "hbs.drift": json.dumps(DRIFT)}
    del onx.metadata_props[:]
    for k, v in sorted(meta.items()):
        p = onx.metadata_props.add()
        p.key, p.value = k, v
    data: bytes = onx.SerializeToString(deterministic=True)
    return data


def feature_stats(X: np.ndarray) -> dict[str, Any]:
    out = {}
    for i, f in enumerate(FEATURES):
        col = X[:, i]
        out[f] = {"mean": round(float(col.mean()), 4), "std": round(float(col.std()), 4),
                  "min": round(float(col.min()), 3), "max": round(float(col.max()), 3),
                  "p01": round(float(np.percentile(col, 1)), 3),
                  "p99": round(float(np.percentile(col, 99)), 3)}
    return out


def read_golden() -> tuple[np.ndarray, np.ndarray]:
    with GOLDEN.open(newline="") as f:
        rows = list(csv.DictReader(f))
    X = np.array([[float(r[c]) for c in FEATURES] for r in rows], dtype=np.float32)
    return X, np.array([int(r["label"]) for r in rows])


def golden_metrics(data: bytes, threshold: float) -> dict[str, Any]:
    """The model file's own metrics on the golden set, as onnxruntime computes them."""
    import onnxruntime as ort

    X, y = read_golden()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    scores = sess.run(["probabilities"], {sess.get_inputs()[0].name: X})[0][:, 1]
    pred = (scores >= threshold).astype(int)
    p, r, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    return {"rows": len(y), "anomalies": int(y.sum()), "precision": round(float(p), 4),
            "recall": round(float(r), 4), "f1": round(float(f1), 4),
            "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}}


def digest_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def model_card(spec: Spec, data: bytes, metrics: dict[str, Any], stats: dict[str, Any],
               trained_rows: int, kinds: Counter[str]) -> dict[str, Any]:
    return {
        "model_card_version": 1,
        "name": MODEL_NAME,
        "version": spec.version,
        "summary": spec.summary,
        "component": COMPONENT,
        "artifact": MODEL_FILE,
        "format": f"ONNX (opset {OPSET}), exported with skl2onnx; run with onnxruntime",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "input_schema": {
            "topic": "hbs/pump/sensors",
            "encoding": "JSON object per message",
            "fields": {"id": "string, echoed in the score",
                       "temperature_c": "number, motor temperature in degrees Celsius",
                       "humidity_pct": "number, relative humidity in the pump housing, 0-100",
                       "pump_current_a": "number, pump current in amperes"},
        },
        "outputs": {
            "score_topic": "hbs/pump/anomaly",
            "score": "P(anomaly) in [0, 1]; label = score >= threshold",
            "health_topic": "hbs/pump/model-health",
        },
        "threshold": spec.threshold,
        "golden_set": {"file": "suites/ml/data/golden.csv",
                       "sha256": hashlib.sha256(GOLDEN.read_bytes()).hexdigest(), **metrics},
        "training_data": {"generator": "ml/sensors.py", "rows": trained_rows,
                          "anomaly_rate": round(sum(v for k, v in kinds.items() if k != "normal")
                                                / max(1, sum(kinds.values())), 4),
                          "kinds": dict(sorted(kinds.items())), "features": stats},
        "drift": {**DRIFT, "signal": "model-health message with drift.detected true",
                  "method": "per-feature |window mean - training mean| / training std"},
        "trained_by": "ml/train.py (ml/requirements.lock)",
    }


def set_recipe_digest(text: str, digest: str, artifact: str = MODEL_FILE) -> str:
    """The recipe with an artifact's Digest (the first Digest after its URI) set."""
    uri = re.search(r"URI: \S+/" + re.escape(artifact) + r"\n", text)
    found = re.compile(r"(Digest: ).*").search(text, uri.end()) if uri else None
    if found is None:
        raise SystemExit(f"the recipe has no {artifact} artifact with a Digest line")
    return text[:found.start()] + found.group(1) + digest + text[found.end():]


def set_recipe_image(text: str, image: str) -> str:
    new, n = re.subn(r"URI: docker:\S+", f"URI: docker:{image}", text)
    if n != 1:
        raise SystemExit("the recipe has no docker: artifact (the detector image)")
    return new


def build(spec: Spec, X: np.ndarray, y: np.ndarray, kind: list[str]) -> dict[Path, bytes]:
    """Every file this candidate gets, by path: model, recipe, card."""
    base = "ml-good" if spec.tamper else spec.candidate
    good = next(s for s in SPECS if s.candidate == base)
    model, trained = fit(good, X, y, kind)
    stats = feature_stats(trained)
    data = to_onnx_bytes(model, spec, stats)
    kinds: Counter[str] = Counter(kind) if good.candidate != "ml-slow" else Counter(
        "anomaly" if v else "normal" for v in generate(seed=8, rows=4000)[1])
    if good.candidate == "ml-regressed":
        kinds.pop("dry_run", None)
    card = model_card(spec, data, golden_metrics(data, spec.threshold), stats, len(trained), kinds)
    cdir = ROOT / "candidates" / spec.candidate
    recipe = cdir / "recipes" / f"{COMPONENT}-{spec.version}.yaml"
    compose = COMPOSE.format(image=IMAGE, version=spec.version).encode()
    recipe_text = set_recipe_digest(recipe.read_text(encoding="utf-8"), digest_b64(data))
    recipe_text = set_recipe_digest(recipe_text, digest_b64(compose), "docker-compose.yaml")
    recipe_text = set_recipe_image(recipe_text, IMAGE)
    if spec.tamper:
        # after the digest: one byte of the last model property's value changes
        data = data[:-1] + bytes([data[-1] ^ 0x01])
        card["note"] = "the model file differs from its declared digest by one byte: the hub must refuse it"
    header = (f"# Model card of {MODEL_NAME} {spec.version} (candidate {spec.candidate}), written by "
              "ml/train.py: do not edit by hand.\n")
    return {cdir / "artifacts" / COMPONENT / spec.version / MODEL_FILE: data,
            cdir / "artifacts" / COMPONENT / spec.version / "docker-compose.yaml": compose,
            recipe: recipe_text.encode(),
            cdir / "model-card.yaml": (header + yaml.safe_dump(card, sort_keys=False)).encode()}


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # skl2onnx numbers some node names in the order it walks sets of strings: with Python's
        # per-process string hashing that order (and so the model's bytes) would vary run to run
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})  # noqa: S606
    ap = argparse.ArgumentParser(description="train the example anomaly detectors (candidates/ml-*)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    ap.add_argument("--only", action="append", help="candidate name(s) to build (default: all)")
    ap.add_argument("--image", help="pin this detector image (name@sha256:...) instead of IMAGE, e.g. the "
                                    "digest `hil lab up` reported after the image's inputs changed")
    args = ap.parse_args(argv)
    if args.image:
        global IMAGE
        IMAGE = args.image
    X, y, kind = training_data()
    changed = []
    for spec in SPECS:
        if args.only and spec.candidate not in args.only:
            continue
        for path, data in build(spec, X, y, kind).items():
            same = path.is_file() and path.read_bytes() == data
            if path.suffix == ".onnx":
                print(f"{spec.candidate}: {path.name} sha256 {hashlib.sha256(data).hexdigest()} "
                      f"({len(data)} bytes){'' if same else ' CHANGED'}")
            if not same:
                changed.append(path)
                if not args.check:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
    if args.check and changed:
        print("differs from the checked-in files: " + ", ".join(str(p.relative_to(ROOT)) for p in changed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
