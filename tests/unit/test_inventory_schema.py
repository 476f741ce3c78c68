"""The JSON Schema of devices.yaml: generated from the models, committed for editors, kept current."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hil.inventory import _InventoryLoader
from hil.inventory_schema import inventory_schema, inventory_schema_text

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "devices.schema.json"


def _leaves(errors: Any) -> Any:
    for e in errors:  # an anyOf (optional field) keeps its branches' errors in .context
        if e.context:
            yield from _leaves(e.context)
        else:
            yield e


def _errors(doc: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(inventory_schema())
    return sorted({f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
                   for e in _leaves(validator.iter_errors(doc))})


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_InventoryLoader)  # noqa: S506 - a SafeLoader subclass


def test_the_committed_schema_is_current() -> None:
    assert COMMITTED.read_text() == inventory_schema_text(), (
        "docs/devices.schema.json is stale: run `hil devices schema > docs/devices.schema.json`")


def test_hil_devices_schema_prints_it() -> None:
    out = subprocess.run([sys.executable, "-m", "hil.cli", "devices", "schema"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert json.loads(out) == inventory_schema()


def test_the_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(inventory_schema())


def test_the_checked_in_inventory_validates() -> None:
    assert _errors(_yaml((ROOT / "devices.yaml").read_text())) == []


def test_typos_and_wrong_types_are_flagged() -> None:
    doc = _yaml((ROOT / "devices.yaml").read_text())
    doc["devices"]["hub-01"]["ssh"]["prot"] = 22
    doc["devices"]["hub-02"]["power"]["outlte"] = 2
    doc["devices"]["hub-03"]["power"]["driver"] = "tasmoto"
    doc["devices"]["hub-vuln"]["console"]["login"] = {"user": "hil", "password": "hunter2"}
    doc["lab_name"] = "x"
    errors = _errors(doc)
    assert any(e.startswith("devices.hub-01.ssh: Additional properties") and "prot" in e for e in errors)
    assert any(e.startswith("devices.hub-02.power: Additional properties") and "outlte" in e for e in errors)
    assert any(e.startswith("devices.hub-03.power.driver: 'tasmoto' is not one of") for e in errors)
    assert any(e.startswith("devices.hub-vuln.console.login.password: 'hunter2' does not match")
               for e in errors)
    assert any(e.startswith(": Additional properties") and "lab_name" in e for e in errors)


def test_each_power_driver_has_its_own_parameters() -> None:
    doc = _yaml("devices:\n  hub-a:\n    power: {driver: command, on: [a], off: [b], url: 'http://x'}\n")
    assert any("'url' was unexpected" in e for e in _errors(doc))
    doc = _yaml("devices:\n  hub-a:\n    power: {driver: command, on: [a], off: [b], status: [c]}\n")
    assert _errors(doc) == []


@pytest.mark.skipif(shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) is None,
                    reason="check-jsonschema (dev extra) is not installed")
def test_an_off_the_shelf_validator_reads_the_committed_copy(tmp_path: Path) -> None:
    tool = str(Path(sys.executable).parent / "check-jsonschema")
    good = subprocess.run([tool, "--schemafile", str(COMMITTED), str(ROOT / "devices.yaml")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = tmp_path / "rack.yaml"
    bad.write_text((ROOT / "devices.yaml").read_text().replace("outlet: 2}", "outlte: 2}"))
    res = subprocess.run([tool, "--schemafile", str(COMMITTED), str(bad)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 1 and "outlte" in res.stdout + res.stderr
