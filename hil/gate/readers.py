"""Read a run's results from the harness's JSON lines, allure-results and/or JUnit XML.

Readers are defensive: a missing field is a missing fact, an unreadable line is a
warning, and only "nothing to read at all" is an error (the caller decides what that
means for the gate).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET  # our own pytest's JUnit output, not untrusted XML
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from hil.errors import FailureClass, UserError
from hil.gate.results import (
    SUITE_NAMES,
    Disposition,
    LatencyFigure,
    MlFigure,
    RunMetadata,
    RunResults,
    TestRecord,
)

RESULTS_JSONL = "results.jsonl"
LATENCY_JSONL = "latency.jsonl"
ML_JSONL = "ml.jsonl"
CANDIDATE_JSON = "candidate.json"
RUN_META_NAMES = ("run.json", "meta.json", "metadata.json")

_OUTCOMES = {"passed": Disposition.PASSED, "pass": Disposition.PASSED, "xpassed": Disposition.PASSED,
             "failed": Disposition.FAILED, "error": Disposition.FAILED, "broken": Disposition.FAILED,
             "fail": Disposition.FAILED, "skipped": Disposition.SKIPPED, "skip": Disposition.SKIPPED,
             "xfailed": Disposition.SKIPPED, "unknown": Disposition.FAILED}
_WORST = {Disposition.PASSED: 0, Disposition.NOT_APPLICABLE: 1, Disposition.SKIPPED: 1, Disposition.FAILED: 2}


# -- locating the files of a run ------------------------------------------------------------------

class ResultFiles:
    """Where a run's results live: a run directory, allure-results, a JUnit file."""

    def __init__(self, run_dir: Path | None, allure_dir: Path | None, junit: list[Path]) -> None:
        self.run_dir = run_dir
        self.allure_dir = allure_dir
        self.junit = junit

    @property
    def empty(self) -> bool:
        return self.run_dir is None and self.allure_dir is None and not self.junit


def locate(results: Path, junit: Iterable[Path] = (), run_id: str | None = None) -> ResultFiles:
    """Find the run directory, allure-results and JUnit XML under ``results``.

    ``results`` may be the reports folder (``reports/``), a run folder
    (``reports/run/<id>``) or an allure-results folder.
    """
    junit_files = [Path(j) for j in junit]
    for j in junit_files:
        if not j.is_file():
            raise UserError("JUnit XML file not found", file=str(j))
    if not results.exists():
        if junit_files:
            return ResultFiles(None, None, junit_files)
        raise UserError("results directory not found", file=str(results))
    if results.is_file():
        if results.suffix == ".xml":
            return ResultFiles(None, None, [*junit_files, results])
        raise UserError("expected a results directory or a JUnit .xml file", file=str(results))
    run_dir: Path | None = None
    allure_dir: Path | None = None
    if (results / RESULTS_JSONL).is_file() or (results / CANDIDATE_JSON).is_file() or any(
            (results / n).is_file() for n in RUN_META_NAMES):
        run_dir = results
    elif _is_allure_dir(results):
        allure_dir = results
    else:
        run_root = results / "run"
        if run_id:
            run_dir = run_root / run_id
            if not run_dir.is_dir():
                raise UserError(f"no run {run_id!r} under {run_root}", file=str(results))
        elif run_root.is_dir():
            runs = sorted((d for d in run_root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
            run_dir = runs[-1] if runs else None
    if allure_dir is None:
        for cand in ([run_dir / "allure-results"] if run_dir else []) + [
                results / "allure-results", results.parent / "allure-results"]:
            if _is_allure_dir(cand):
                allure_dir = cand
                break
    if not junit_files:
        for cand in ([run_dir / "junit.xml"] if run_dir else []) + [results / "junit.xml"]:
            if cand.is_file():
                junit_files = [cand]
                break
    return ResultFiles(run_dir, allure_dir, junit_files)


def _is_allure_dir(d: Path) -> bool:
    return d.is_dir() and any(d.glob("*-result.json"))


# -- the whole run ---------------------------------------------------------------------------

def read_run(files: ResultFiles, *, inventory_devices: Mapping[str, str] | None = None) -> RunResults:
    """Records from the richest source present (JSON lines > allure > JUnit), plus metadata."""
    warnings: list[str] = []
    sources: list[str] = []
    meta = read_metadata(files.run_dir, warnings) if files.run_dir else RunMetadata()
    if files.run_dir:
        sources.append(str(files.run_dir))
    known = dict(inventory_devices or {})
    known.update({d: m for d, m in meta.devices.items() if m})
    for d in meta.devices:
        known.setdefault(d, "")

    jsonl: list[TestRecord] = []
    if files.run_dir and (files.run_dir / RESULTS_JSONL).is_file():
        jsonl = list(read_jsonl(files.run_dir / RESULTS_JSONL, warnings))
    allure = list(read_allure(files.allure_dir, warnings)) if files.allure_dir else []
    if files.allure_dir:
        sources.append(str(files.allure_dir))
    junit: list[TestRecord] = []
    for j in files.junit:
        junit.extend(read_junit(j, warnings))
        sources.append(str(j))

    primary = jsonl or allure or junit
    records = _merge(primary, allure if primary is not allure else [])
    records = [_fill_device(r, known) for r in records]
    latency = list(read_latency(files.run_dir, warnings)) if files.run_dir else []
    ml = list(read_ml(files.run_dir, warnings)) if files.run_dir else []
    return RunResults(records=records, metadata=meta, latency=latency, ml=ml, sources=sources,
                      warnings=warnings)


def _merge(primary: list[TestRecord], allure: list[TestRecord]) -> list[TestRecord]:
    """One record per node id (worst phase wins); take allure's uuid where we lack one."""
    by_id: dict[str, TestRecord] = {}
    for rec in primary:
        old = by_id.get(rec.nodeid)
        if old is None or _WORST[rec.disposition] >= _WORST[old.disposition]:
            if old is not None and not rec.allure_uuid and old.allure_uuid:
                rec = _replace(rec, allure_uuid=old.allure_uuid, allure_name=old.allure_name,
                               start_ms=old.start_ms)
            by_id[rec.nodeid] = rec
    allure_by_id = {a.nodeid: a for a in allure}
    out = []
    for rec in by_id.values():
        a = allure_by_id.get(rec.nodeid)
        if a is not None:
            rec = _replace(rec, allure_uuid=rec.allure_uuid or a.allure_uuid,
                           allure_name=rec.allure_name or a.allure_name, start_ms=rec.start_ms or a.start_ms,
                           device=rec.device or a.device, model=rec.model or a.model,
                           suites=rec.suites or a.suites)
        out.append(rec)
    return out


def _replace(rec: TestRecord, **changes: Any) -> TestRecord:
    from dataclasses import replace
    return replace(rec, **changes)


def _fill_device(rec: TestRecord, known: Mapping[str, str]) -> TestRecord:
    device = rec.device
    if device is None and "[" in rec.nodeid:
        ids = rec.nodeid[rec.nodeid.index("["):]
        # a device name as one whole parameter id: [hub-01], [x-hub-01], [hub-01-x]
        for name in sorted(known, key=len, reverse=True):
            if re.search(rf"[\[\-]{re.escape(name)}[\]\-]", ids):
                device = name
                break
    model = rec.model or (known.get(device) or None if device else None)
    if device == rec.device and model == rec.model:
        return rec
    return _replace(rec, device=device, model=model)


# -- metadata --------------------------------------------------------------------------------

def _load_json(path: Path, warnings: list[str]) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.append(f"{path}: unreadable ({exc})")
        return {}
    if not isinstance(doc, dict):
        warnings.append(f"{path}: expected a JSON object")
        return {}
    return doc


def read_metadata(run_dir: Path, warnings: list[str]) -> RunMetadata:
    meta = RunMetadata(run_id=run_dir.name)
    doc: dict[str, Any] = {}
    for name in RUN_META_NAMES:
        if (run_dir / name).is_file():
            doc = _load_json(run_dir / name, warnings)
            break
    cand: dict[str, Any] = {}
    if (run_dir / CANDIDATE_JSON).is_file():
        cand = _load_json(run_dir / CANDIDATE_JSON, warnings)
    elif isinstance(doc.get("candidate"), dict):
        cand = doc["candidate"]
    meta.candidate = cand
    meta.run_id = _str(doc.get("run_id")) or meta.run_id
    finished = doc.get("finished")
    status = _str(doc.get("status"))
    if isinstance(finished, bool):
        meta.finished = finished
    elif status:
        meta.finished = status.lower() in ("finished", "complete", "completed", "done")
    elif doc.get("ended") or doc.get("finished_at"):
        meta.finished = True
    # otherwise nobody said: only an explicit "not finished" makes a run partial
    inv = doc.get("inventory")
    meta.inventory_sha256 = _str(doc.get("inventory_sha256")) or (
        _str(inv.get("sha256")) if isinstance(inv, dict) else None)
    meta.inventory_path = _str(inv.get("path")) if isinstance(inv, dict) else _str(inv)
    meta.git_revision = (_str(doc.get("git_revision")) or _str(doc.get("harness_git_revision"))
                         or _str(doc.get("harness_revision")) or _str(cand.get("harness_git_revision")))
    meta.ci_job_url = _str(doc.get("ci_job_url"))
    devices = doc.get("devices")
    if isinstance(devices, dict):
        devices = [{"name": k, **(v if isinstance(v, dict) else {"model": v})} for k, v in devices.items()]
    for dev in devices if isinstance(devices, list) else []:
        if isinstance(dev, str):
            meta.devices[dev] = None
        elif isinstance(dev, dict):
            dev_name = _str(dev.get("name")) or _str(dev.get("id"))
            if not dev_name:
                continue
            meta.devices[dev_name] = _str(dev.get("model"))
            if dev.get("broken") is True or dev.get("healthy") is False:
                meta.broken_devices.add(dev_name)
    broken = doc.get("broken_devices")
    if isinstance(broken, list):
        meta.broken_devices.update(str(b) for b in broken)
    return meta


def _str(v: object) -> str | None:
    return str(v) if isinstance(v, str | int | float) and not isinstance(v, bool) and str(v) else None


# -- the harness's own JSON lines --------------------------------------------------------------

def read_jsonl(path: Path, warnings: list[str]) -> Iterator[TestRecord]:
    """reports/run/<id>/results.jsonl, one object per finished test."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        warnings.append(f"{path}: unreadable ({exc})")
        return
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            # the last line of a killed run may be cut short
            warnings.append(f"{path}:{n}: not JSON, skipped")
            continue
        if not isinstance(doc, dict) or not _str(doc.get("nodeid")):
            warnings.append(f"{path}:{n}: no nodeid, skipped")
            continue
        outcome = _OUTCOMES.get(str(doc.get("outcome", "")).lower())
        if outcome is None:
            warnings.append(f"{path}:{n}: unknown outcome {doc.get('outcome')!r}, skipped")
            continue
        message = _str(doc.get("message")) or _str(doc.get("longrepr")) or ""
        allure: dict[str, Any] = doc["allure"] if isinstance(doc.get("allure"), dict) else {}
        disposition = _disposition(doc.get("disposition"), outcome)
        yield TestRecord(
            nodeid=str(doc["nodeid"]), disposition=disposition,
            failure_class=_blame(disposition, _failure_class(doc.get("failure_class")), FailureClass.HARNESS),
            message=message, duration=_float(doc.get("duration", doc.get("duration_s"))),
            device=_str(doc.get("device")), model=_str(doc.get("model")),
            suites=_suites(doc.get("suites") or doc.get("suite") or doc.get("markers"), str(doc["nodeid"])),
            allure_uuid=_str(doc.get("allure_uuid")) or _str(doc.get("uuid")) or _str(allure.get("uuid")),
            source="jsonl")


def _disposition(v: object, outcome: Disposition) -> Disposition:
    """The record's own ``disposition`` field when it has a valid one, else pytest's outcome."""
    try:
        given = Disposition(str(v).lower()) if v else None
    except ValueError:
        given = None
    if given is None:
        return outcome
    # a field that contradicts the outcome (a "passed" record of a failed test) is not believed
    return given if given.outcome is outcome.outcome else outcome


def _blame(disposition: Disposition, explicit: FailureClass | None,
           unrecorded: FailureClass | None) -> FailureClass | None:
    """The failure class a record carries; ``unrecorded`` for a failure that carries none.

    A failure whose class nobody recorded is not the product's by default: the source
    could not type it, so it proves nothing about the candidate.
    """
    if disposition is Disposition.PASSED:
        return None
    if explicit is not None:
        return explicit
    return unrecorded if disposition is Disposition.FAILED else None


def _failure_class(v: object) -> FailureClass | None:
    try:
        return FailureClass(str(v).lower()) if v else None
    except ValueError:
        return None


def _float(v: object) -> float | None:
    try:
        return float(v) if v is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _suites(raw: object, nodeid: str) -> frozenset[str]:
    names: set[str] = set()
    if isinstance(raw, str):
        names.update(p.strip() for p in raw.split(","))
    elif isinstance(raw, list | tuple | set | frozenset):
        names.update(str(x) for x in raw)
    found = {n for n in names if n}
    if not found.intersection(SUITE_NAMES):
        # suites/<name>/... says which suite a test belongs to when no marker does
        m = re.search(r"(?:^|/)suites/([A-Za-z0-9_]+)/", nodeid)
        if m:
            found.add(m.group(1))
    return frozenset(found)


def _jsonl_objects(path: Path, warnings: list[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a figures file, one per line; a line cut short is a warning."""
    if not path.is_file():
        return
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            doc = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            warnings.append(f"{path}:{n}: not JSON, skipped")
            continue
        if isinstance(doc, dict):
            yield doc


def read_latency(run_dir: Path, warnings: list[str]) -> Iterator[LatencyFigure]:
    """reports/run/<id>/latency.jsonl: {metric, device, p95_ms, p99_ms, samples}."""
    for doc in _jsonl_objects(run_dir / LATENCY_JSONL, warnings):
        if not _str(doc.get("metric")):
            continue
        samples = doc.get("samples", doc.get("n"))
        yield LatencyFigure(metric=str(doc["metric"]), device=_str(doc.get("device")),
                            p95_ms=_float(doc.get("p95_ms")), p99_ms=_float(doc.get("p99_ms")),
                            samples=int(samples) if isinstance(samples, int) else None,
                            nodeid=_str(doc.get("nodeid")))


def read_ml(run_dir: Path, warnings: list[str]) -> Iterator[MlFigure]:
    """reports/run/<id>/ml.jsonl: {kind, device, values, model, nodeid} per figure."""
    for doc in _jsonl_objects(run_dir / ML_JSONL, warnings):
        if not _str(doc.get("kind")) or not isinstance(doc.get("values"), dict):
            continue
        model = doc.get("model")
        yield MlFigure(kind=str(doc["kind"]), device=_str(doc.get("device")), values=dict(doc["values"]),
                       nodeid=_str(doc.get("nodeid")), model=dict(model) if isinstance(model, dict) else {})


# -- allure-results ---------------------------------------------------------------------------

def allure_nodeid(full_name: str, name: str) -> str:
    """allure-pytest's ``pkg.mod.Class#test`` + ``test[param]`` -> ``pkg/mod.py::Class::test[param]``."""
    dotted = full_name.split("#", 1)[0]
    parts = [p for p in dotted.split(".") if p]
    cut = next((i for i, p in enumerate(parts) if p[:1].isupper()), len(parts))
    module, classes = parts[:cut], parts[cut:]
    path = "/".join(module) + ".py" if module else ""
    return "::".join([path, *classes, name]) if path else "::".join([*classes, name])


def read_allure(allure_dir: Path, warnings: list[str]) -> Iterator[TestRecord]:
    for path in sorted(allure_dir.glob("*-result.json")):
        doc = _load_json(path, warnings)
        if not doc or "name" not in doc:
            continue
        labels: dict[str, list[str]] = {}
        for lab in doc.get("labels") or []:
            if isinstance(lab, dict) and "name" in lab:
                labels.setdefault(str(lab["name"]), []).append(str(lab.get("value", "")))
        status = str(doc.get("status", "unknown")).lower()
        outcome = _OUTCOMES.get(status, Disposition.FAILED)
        details: dict[str, Any] = doc["statusDetails"] if isinstance(doc.get("statusDetails"), dict) else {}
        message = str(details.get("message") or "")
        if outcome is Disposition.SKIPPED:
            message = message.removeprefix("Skipped: ")
        nodeid = (_first(labels, "nodeid", "hil.nodeid")
                  or allure_nodeid(str(doc.get("fullName") or doc["name"]), str(doc["name"])))
        explicit = _failure_class(_first(labels, "failure_class", "hil.failure_class"))
        disposition = _disposition(_first(labels, "disposition", "hil.disposition"), outcome)
        # allure-pytest types the exception itself: "failed" for AssertionError and
        # pytest.fail (a check that failed), "broken" for any other exception
        unrecorded = FailureClass.PRODUCT if status == "failed" else FailureClass.HARNESS
        start = doc.get("start")
        stop = doc.get("stop")
        yield TestRecord(
            nodeid=nodeid, disposition=disposition,
            failure_class=_blame(disposition, explicit, unrecorded),
            message=message,
            duration=(stop - start) / 1000 if isinstance(start, int) and isinstance(stop, int) else None,
            device=_first(labels, "device", "hil.device"), model=_first(labels, "model", "hil.model"),
            # the plugin sets the "suite" label to the suite's name; allure's own default is
            # the module name, which is not a suite
            suites=_suites(labels.get("tag", []) + [s for s in labels.get("suite", [])
                                                    if not s.startswith("test")], nodeid),
            allure_uuid=_str(doc.get("uuid")), allure_name=str(doc["name"]),
            start_ms=start if isinstance(start, int) else None, source="allure")


def _first(labels: Mapping[str, list[str]], *names: str) -> str | None:
    for n in names:
        if labels.get(n):
            return labels[n][0]
    return None


# -- JUnit XML ---------------------------------------------------------------------------------

def read_junit(path: Path, warnings: list[str]) -> Iterator[TestRecord]:
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - see the import
    except (OSError, ET.ParseError) as exc:
        warnings.append(f"{path}: unreadable JUnit XML ({exc})")
        return
    for case in root.iter("testcase"):
        name = case.get("name") or "?"
        classname = case.get("classname") or ""
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        nodeid = props.get("nodeid") or allure_nodeid(classname, name)
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        if failure is not None or error is not None:
            node = failure if failure is not None else error
            assert node is not None
            outcome, message = Disposition.FAILED, node.get("message") or (node.text or "")[:500]
        elif skipped is not None:
            outcome, message = Disposition.SKIPPED, skipped.get("message") or ""
        else:
            outcome, message = Disposition.PASSED, ""
        disposition = _disposition(props.get("disposition"), outcome)
        yield TestRecord(
            nodeid=nodeid, disposition=disposition,
            # JUnit XML itself does not type a failure: only the plugin's property does
            failure_class=_blame(disposition, _failure_class(props.get("failure_class")),
                                 FailureClass.HARNESS),
            message=message, duration=_float(case.get("time")),
            device=props.get("device") or None, model=props.get("model") or None,
            suites=_suites(props.get("suites") or props.get("markers") or "", nodeid),
            allure_uuid=props.get("allure_uuid") or None, source="junit")
