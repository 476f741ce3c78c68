"""The example models are trained reproducibly: ml/train.py, in a fresh environment made from
ml/requirements.lock (exact versions, hash-checked), trains every model again and finds each
checked-in file (models, recipe digests, model cards) byte for byte the same.

The environment is kept under /var/tmp by the lock's hash (a second run only trains: ~15 s).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "ml" / "requirements.lock"
INSTALL_TIMEOUT = 900.0
TRAIN_TIMEOUT = 600.0


def training_python() -> Path:
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    root = Path("/var/tmp") / f"hil-ml-train-{digest}"  # a cache keyed by the lock's hash
    python = root / "bin" / "python"
    done = root / ".installed"
    if not done.is_file():
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps",
                        "--only-binary=:all:", "-r", str(LOCK)], check=True, timeout=INSTALL_TIMEOUT)
        done.write_text(digest)
    return python


def test_training_again_gives_the_checked_in_models_byte_for_byte() -> None:
    assert sys.version_info[:2] == (3, 11), "the lock pins CPython 3.11 wheels"
    got = subprocess.run([str(training_python()), str(REPO / "ml" / "train.py"), "--check"],
                         capture_output=True, text=True, timeout=TRAIN_TIMEOUT, check=False)
    assert got.returncode == 0, got.stdout + got.stderr
    for name in ("ml-good", "ml-regressed", "ml-slow", "ml-tampered"):
        assert f"{name}: model.onnx sha256 " in got.stdout
    assert "CHANGED" not in got.stdout
