"""Known-vulnerable package versions (OWASP I5), as OSV records, judged against an SBOM.

The policy file (``suites/security/advisories.yaml``) is versioned with the suites::

    version: 1
    fail_on: [critical, high, medium, unknown]   # severities that fail the check
    require_fix: true        # only an advisory with a fixed version fails (an upgrade exists)
    osv_exports: []          # folders of OSV JSON records (e.g. an offline osv.dev export)
    advisories:              # OSV records (https://ossf.github.io/osv-schema/), in YAML
      - id: HIL-LAB-2026-0001
        summary: ...
        database_specific: {severity: HIGH}
        affected:
          - package: {ecosystem: Debian, name: hil-lab-demo-agent}
            ranges: [{type: ECOSYSTEM, events: [{introduced: "0"}, {fixed: "1.2.0-2"}]}]

An entry *is* an OSV record, so a team can drop an offline export (one JSON record per
file, or a JSON list) into a folder named in ``osv_exports``. Debian and Ubuntu records
(ecosystem ``Debian``, ``Debian:12``, ``Ubuntu:22.04`` ...) are matched against the
packages of the hub's or image's distribution (``ID`` or ``ID_LIKE`` of os-release, and
the release when the ecosystem names one), by source package as Debian's advisories
are written, with dpkg's version order. Records of other ecosystems are counted and
left out. Severity: ``database_specific.severity`` (GHSA style), else an ``urgency``
(Debian), else a numeric ``severity[].score``; a CVSS vector alone gives ``unknown``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hil.errors import UserError
from hil.software.debversion import DebianVersion, DebianVersionError
from hil.software.sbom import OsRelease, Package

POLICY_VERSION = 1
SEVERITIES = ("critical", "high", "medium", "low", "unknown")
DPKG_ECOSYSTEMS = ("debian", "ubuntu")
"""Ecosystems whose versions compare with dpkg's algorithm."""
_WORDS = {"critical": "critical", "high": "high", "important": "high", "moderate": "medium",
          "medium": "medium", "low": "low", "unimportant": "low", "negligible": "low"}
_POLICY_KEYS = ("version", "fail_on", "require_fix", "osv_exports", "advisories")


class AdvisoryError(UserError):
    """The advisory file or an OSV export is malformed (names file and field)."""


@dataclass(frozen=True)
class Affected:
    ecosystem: str
    """Lower-case distribution (debian, ubuntu)."""
    release: str
    """``12`` for ``Debian:12``; '' when the record names no release."""
    package: str
    ranges: tuple[tuple[tuple[str, str], ...], ...]
    """ECOSYSTEM ranges: each a sequence of (event, version) in the record's order."""
    versions: tuple[str, ...]


@dataclass(frozen=True)
class Advisory:
    id: str
    summary: str
    severity: str
    affected: tuple[Affected, ...]
    source: str
    """The file it came from."""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdvisoryPolicy:
    path: Path
    fail_on: frozenset[str]
    require_fix: bool
    advisories: tuple[Advisory, ...]
    ignored: int = 0
    """Records of ecosystems this check does not judge (npm, PyPI, ...)."""
    _index: dict[tuple[str, str], list[tuple[Advisory, Affected]]] = field(default_factory=dict, repr=False,
                                                                            compare=False)

    def candidates(self, ecosystem: str, package: str) -> list[tuple[Advisory, Affected]]:
        if not self._index:
            for adv in self.advisories:
                for aff in adv.affected:
                    self._index.setdefault((aff.ecosystem, aff.package), []).append((adv, aff))
        return self._index.get((ecosystem, package), [])


@dataclass(frozen=True)
class Match:
    """An installed package an advisory affects."""

    advisory: str
    package: str
    installed: str
    fixed: str | None
    """The version that fixes it ('' / None: no fix known)."""
    severity: str
    blocking: bool
    why: str
    summary: str = ""
    aliases: tuple[str, ...] = ()


@dataclass
class AdvisoryVerdict:
    """The evidence of one judgement: every match, and what could not be judged."""

    subject: str
    distribution: str
    packages: int
    advisories: int
    matches: list[Match] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)
    """Packages whose version could not be read, with why."""

    @property
    def blocking(self) -> list[Match]:
        return [m for m in self.matches if m.blocking]


# -- loading ---------------------------------------------------------------------------------------

def load_advisories(path: str | Path) -> AdvisoryPolicy:
    """The policy file and the OSV exports it names; ``AdvisoryError`` naming file and field."""
    p = Path(path)
    doc = _read_yaml(p)
    if not isinstance(doc, Mapping):
        raise AdvisoryError("top level must be a mapping (version, fail_on, advisories, ...)", file=str(p))
    for key in doc:
        if key not in _POLICY_KEYS:
            raise AdvisoryError(f"unknown field (typo?); allowed: {', '.join(_POLICY_KEYS)}", file=str(p),
                                field=str(key))
    if doc.get("version", POLICY_VERSION) != POLICY_VERSION:
        raise AdvisoryError(f"must be {POLICY_VERSION}", file=str(p), field="version")
    fail_on = doc.get("fail_on", ["critical", "high", "medium", "unknown"])
    if not isinstance(fail_on, list) or any(str(s).lower() not in SEVERITIES for s in fail_on):
        raise AdvisoryError(f"must be a list of {', '.join(SEVERITIES)}", file=str(p), field="fail_on")
    require_fix = doc.get("require_fix", True)
    if not isinstance(require_fix, bool):
        raise AdvisoryError("must be true or false", file=str(p), field="require_fix")
    records: list[tuple[str, str, Any]] = []
    entries = doc.get("advisories") or []
    if not isinstance(entries, list):
        raise AdvisoryError("must be a list of OSV records", file=str(p), field="advisories")
    records += [(str(p), f"advisories[{i}]", r) for i, r in enumerate(entries)]
    exports = doc.get("osv_exports") or []
    if not isinstance(exports, list) or not all(isinstance(e, str) and e for e in exports):
        raise AdvisoryError("must be a list of folders", file=str(p), field="osv_exports")
    for folder in exports:
        records += _export_records(p, folder)
    advisories: list[Advisory] = []
    ignored = 0
    for source, where, rec in records:
        adv = _advisory(rec, source, where)
        if adv is None:
            ignored += 1
        else:
            advisories.append(adv)
    return AdvisoryPolicy(path=p.resolve(), fail_on=frozenset(str(s).lower() for s in fail_on),
                          require_fix=require_fix, advisories=tuple(advisories), ignored=ignored)


def _read_yaml(p: Path) -> Any:
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AdvisoryError("advisory file not found", file=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdvisoryError(f"cannot read: {exc}", file=str(p)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise AdvisoryError(f"not valid YAML{where}", file=str(p)) from None


def _export_records(policy: Path, folder: str) -> list[tuple[str, str, Any]]:
    base = Path(folder) if Path(folder).is_absolute() else policy.resolve().parent / folder
    if not base.is_dir():
        raise AdvisoryError(f"{folder}: not a folder of OSV records", file=str(policy), field="osv_exports")
    out: list[tuple[str, str, Any]] = []
    for f in sorted(base.rglob("*.json")):
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AdvisoryError(f"not an OSV JSON record: {exc}", file=str(f)) from None
        if isinstance(doc, list):
            out += [(str(f), f"[{i}]", r) for i, r in enumerate(doc)]
        else:
            out.append((str(f), "(record)", doc))
    return out


def _advisory(rec: Any, source: str, where: str) -> Advisory | None:
    """One OSV record; None when it names no ecosystem this check judges."""
    if not isinstance(rec, Mapping):
        raise AdvisoryError("an OSV record must be a mapping", file=source, field=where)
    rid = rec.get("id")
    if not isinstance(rid, str) or not rid:
        raise AdvisoryError("required: the advisory id", file=source, field=f"{where}.id")
    affected_raw = rec.get("affected")
    if not isinstance(affected_raw, list) or not affected_raw:
        raise AdvisoryError("required: a list of affected packages", file=source, field=f"{where}.affected")
    affected: list[Affected] = []
    for i, aff in enumerate(affected_raw):
        fld = f"{where}.affected[{i}]"
        pkg = aff.get("package") if isinstance(aff, Mapping) else None
        if not isinstance(pkg, Mapping) or not isinstance(pkg.get("ecosystem"), str) \
                or not isinstance(pkg.get("name"), str):
            raise AdvisoryError("required: package {ecosystem, name}", file=source, field=f"{fld}.package")
        eco, _, release = pkg["ecosystem"].partition(":")
        if eco.lower() not in DPKG_ECOSYSTEMS:
            continue
        ranges = []
        for j, rng in enumerate(aff.get("ranges") or []):
            if not isinstance(rng, Mapping) or rng.get("type") != "ECOSYSTEM":
                continue
            events = rng.get("events")
            if not isinstance(events, list) or not events:
                raise AdvisoryError("an ECOSYSTEM range needs events", file=source,
                                    field=f"{fld}.ranges[{j}]")
            evs = []
            for k, ev in enumerate(events):
                kind = next(iter(ev), None) if isinstance(ev, Mapping) and len(ev) == 1 else None
                if kind not in ("introduced", "fixed", "last_affected", "limit") or not isinstance(
                        ev[kind], str | int | float):
                    raise AdvisoryError("each event is one of introduced, fixed, last_affected, limit: "
                                        "a version", file=source, field=f"{fld}.ranges[{j}].events[{k}]")
                version = str(ev[kind])
                if version != "0" and kind != "limit":
                    _check_version(version, source, f"{fld}.ranges[{j}].events[{k}].{kind}")
                evs.append((kind, version))
            ranges.append(tuple(evs))
        versions = tuple(str(v) for v in aff.get("versions") or [] if isinstance(v, str | int | float))
        affected.append(Affected(eco.lower(), release.split(":")[0], pkg["name"], tuple(ranges), versions))
    if not affected:
        return None
    aliases = tuple(str(a) for a in rec.get("aliases") or [] if isinstance(a, str))
    return Advisory(id=rid, summary=str(rec.get("summary") or rec.get("details") or "")[:300],
                    severity=severity_of(rec), affected=tuple(affected), source=source, aliases=aliases)


def _check_version(version: str, source: str, fld: str) -> None:
    try:
        DebianVersion.parse(version)
    except DebianVersionError as exc:
        raise AdvisoryError(f"not a Debian version: {exc}", file=source, field=fld) from None


def severity_of(rec: Mapping[str, Any]) -> str:
    for holder in [rec.get("database_specific"), *[a.get(k) for a in rec.get("affected") or []
                                                  if isinstance(a, Mapping)
                                                  for k in ("database_specific", "ecosystem_specific")]]:
        if isinstance(holder, Mapping):
            for key in ("severity", "urgency"):
                word = _WORDS.get(str(holder.get(key, "")).strip().lower())
                if word:
                    return word
    for sev in rec.get("severity") or []:
        raw = sev.get("score") if isinstance(sev, Mapping) else None
        try:
            score = float(raw) if isinstance(raw, str | int | float) else None
        except ValueError:  # a CVSS vector: no base score without computing it
            continue
        if score is not None:
            return ("critical" if score >= 9 else "high" if score >= 7 else "medium" if score >= 4
                    else "low")
    return "unknown"


# -- judging ---------------------------------------------------------------------------------------

def judge(subject: str, packages: Iterable[Package], os_release: OsRelease,
          policy: AdvisoryPolicy) -> AdvisoryVerdict:
    """Which installed packages the advisories affect, and which of those fail the check."""
    pkgs = list(packages)
    families = [e for e in (os_release.id.lower(), *(i.lower() for i in os_release.id_like))
                if e in DPKG_ECOSYSTEMS]
    verdict = AdvisoryVerdict(subject=subject, distribution=os_release.distro or "unknown",
                              packages=len(pkgs), advisories=len(policy.advisories))
    if not families:
        verdict.unjudged.append(f"{subject}: distribution {os_release.id or 'unknown'!r} is not one this "
                                f"check judges ({', '.join(DPKG_ECOSYSTEMS)})")
        return verdict
    seen: set[tuple[str, str]] = set()
    for p in pkgs:
        # Debian's advisories name the source package; a binary-only name is matched on the binary
        names = [(p.source_name, p.source_ver)] + ([(p.name, p.version)] if p.name != p.source_name else [])
        for name, version in names:
            try:
                installed = DebianVersion.parse(version)
            except DebianVersionError as exc:
                verdict.unjudged.append(f"{p.name}: {exc}")
                continue
            for eco in families:
                for adv, aff in policy.candidates(eco, name):
                    if aff.release and aff.release != os_release.version_id:
                        continue
                    if (adv.id, p.name) in seen:
                        continue
                    hit, fixed = _affects(installed, version, aff)
                    if not hit:
                        continue
                    seen.add((adv.id, p.name))
                    verdict.matches.append(_match(adv, p, version, fixed, policy))
    return verdict


def _affects(installed: DebianVersion, text: str, aff: Affected) -> tuple[bool, str | None]:
    if text in aff.versions:
        return True, None
    for events in aff.ranges:
        if _in_range(installed, events):
            fixed = next((v for k, v in events if k == "fixed" and installed < DebianVersion.parse(v)), None)
            return True, fixed
    return False, None


def _in_range(v: DebianVersion, events: tuple[tuple[str, str], ...]) -> bool:
    """OSV's evaluation: walk the events in version order; introduced opens, fixed/last_affected close."""
    affected = False
    ordered = sorted((e for e in events if e[0] != "limit"), key=functools.cmp_to_key(_event_order))
    for kind, version in ordered:
        if kind == "introduced":
            if version == "0" or v >= DebianVersion.parse(version):
                affected = True
        elif kind == "fixed":
            if v >= DebianVersion.parse(version):
                affected = False
        elif kind == "last_affected" and v > DebianVersion.parse(version):
            affected = False
    return affected


def _event_order(a: tuple[str, str], b: tuple[str, str]) -> int:
    if a[1] == "0" or b[1] == "0":  # "0": before every version
        return (a[1] != "0") - (b[1] != "0")
    return DebianVersion.parse(a[1]).compare(DebianVersion.parse(b[1]))


def _match(adv: Advisory, p: Package, version: str, fixed: str | None, policy: AdvisoryPolicy) -> Match:
    if adv.severity not in policy.fail_on:
        blocking, why = False, f"severity {adv.severity} is not in fail_on"
    elif policy.require_fix and not fixed:
        blocking, why = False, "no fixed version is known (require_fix: true)"
    else:
        blocking = True
        why = f"{adv.severity}; fixed in {fixed}" if fixed else f"{adv.severity}; no fix known"
    return Match(advisory=adv.id, package=p.name, installed=version, fixed=fixed, severity=adv.severity,
                 blocking=blocking, why=why, summary=adv.summary, aliases=adv.aliases)
