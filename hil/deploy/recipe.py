"""A Greengrass component recipe, read and checked the way the nucleus reads it.

Keys are UpperCamelCase and matched case-insensitively (as Jackson does in the
nucleus); values that are names (dependency names, configuration keys) keep their case.
Every problem names the recipe file and the field path.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hil.deploy.image_ref import image_ref_problem, parse_image_ref
from hil.deploy.semver import Range, Version, VersionError
from hil.drivers.greengrass import COMPONENT_NAME_RE

RECIPE_FORMAT_VERSION = "2020-01-25"
RECIPE_SUFFIXES = (".yaml", ".yml", ".json")
LIFECYCLE_STEPS = ("Setenv", "Install", "Run", "Startup", "Shutdown", "Recover", "Bootstrap")
STEP_KEYS = ("Script", "RequiresPrivilege", "Skipif", "Timeout", "Setenv")
COMPONENT_TYPES = ("aws.greengrass.generic", "aws.greengrass.lambda", "aws.greengrass.plugin",
                   "aws.greengrass.nucleus")
ARTIFACT_SCHEMES = ("s3", "greengrass", "docker")
DIGEST_ALGORITHMS = {"SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
"""Recipe ``Algorithm`` -> hashlib name. The nucleus takes any Java MessageDigest name; the
harness accepts only collision-resistant ones (MD5 and SHA-1 are refused)."""
DEFAULT_DIGEST_ALGORITHM = "SHA-256"
_SKIPIF_RE = re.compile(r"^!?(onpath|exists)\s+\S.*$", re.I)
# registry[:port]/path[:tag][@sha256:digest] - loose, Docker's own grammar is larger

@dataclass(frozen=True)
class Problem:
    """One thing wrong with a candidate, located by file and field."""

    file: str
    field: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}" + (f", field {self.field}" if self.field else "") + f": {self.message}"


@dataclass(frozen=True)
class Artifact:
    uri: str
    scheme: str
    target: str
    """Path part after the scheme: an object key, a file name, or an image reference."""
    unarchive: str = "NONE"
    field: str = "Artifacts"
    """Where the recipe declares it, e.g. Manifests[0].Artifacts[1]."""
    digest: str | None = None
    """``Digest``: base64 of the file's hash, as the nucleus compares it (None: not given)."""
    algorithm: str | None = None
    """``Algorithm``, upper case (SHA-256, SHA-384, SHA-512)."""

    @property
    def basename(self) -> str:
        return self.target.rstrip("/").rsplit("/", 1)[-1]

    @property
    def pinned_image(self) -> bool:
        """A ``docker:`` artifact named by its content digest (name@sha256:...)."""
        return self.scheme == "docker" and image_ref_problem(self.target) is None \
            and parse_image_ref(self.target).pinned


def file_digest(path: Path, algorithm: str = DEFAULT_DIGEST_ALGORITHM) -> str:
    """The recipe ``Digest`` of a file: base64 of its hash (what the nucleus computes)."""
    h = hashlib.new(DIGEST_ALGORITHMS[algorithm.upper()])
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode("ascii")


@dataclass(frozen=True)
class Recipe:
    file: Path
    name: str
    version: str
    dependencies: dict[str, tuple[str, str]] = field(default_factory=dict)
    """name -> (VersionRequirement, DependencyType)."""
    artifacts: tuple[Artifact, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(a.target for a in self.artifacts if a.scheme == "docker")


def get_ci(mapping: Mapping[str, Any], key: str) -> Any:
    """Value of ``key`` in ``mapping``, matching keys case-insensitively (None when absent)."""
    low = key.lower()
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return None


def _has_ci(mapping: Mapping[str, Any], key: str) -> bool:
    return any(isinstance(k, str) and k.lower() == key.lower() for k in mapping)


def load_document(path: Path) -> tuple[Any, Problem | None]:
    """Parse a YAML or JSON recipe file; a problem names the line when the parser gives one."""
    fname = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, Problem(fname, None, "not UTF-8 text")
    except OSError as exc:
        return None, Problem(fname, None, f"cannot read: {exc.strerror}")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text), None
        except RecursionError:
            return None, Problem(fname, None, "nesting is too deep to be a recipe")
        except json.JSONDecodeError as exc:
            return None, Problem(fname, None, f"not valid JSON at line {exc.lineno}, column {exc.colno}: "
                                              f"{exc.msg}")
    try:
        return yaml.safe_load(text), None
    except RecursionError:
        return None, Problem(fname, None, "nesting is too deep to be a recipe")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, Problem(fname, None, f"not valid YAML{where}: {problem}")


def _as_text(value: Any) -> str | None:
    # YAML reads an unquoted 2020-01-25 as a date; the nucleus reads it as text
    if isinstance(value, _dt.date):
        return value.isoformat()
    return value if isinstance(value, str) else None


class _Checker:
    def __init__(self, path: Path) -> None:
        self.file = str(path)
        self.problems: list[Problem] = []

    def add(self, fld: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, fld, message))


def parse_recipe(path: Path) -> tuple[Recipe | None, list[Problem]]:
    """Read and check one recipe; returns the recipe (None if unusable) and every problem found."""
    doc, problem = load_document(path)
    if problem:
        return None, [problem]
    c = _Checker(path)
    if not isinstance(doc, Mapping):
        c.add(None, "a recipe must be a mapping of fields (RecipeFormatVersion, ComponentName, ...)")
        return None, c.problems

    fmt = _as_text(get_ci(doc, "RecipeFormatVersion"))
    if fmt is None:
        c.add("RecipeFormatVersion", f"required; must be '{RECIPE_FORMAT_VERSION}'")
    elif fmt != RECIPE_FORMAT_VERSION:
        c.add("RecipeFormatVersion", f"must be '{RECIPE_FORMAT_VERSION}', got {fmt!r}")

    name = get_ci(doc, "ComponentName")
    if not isinstance(name, str) or not name:
        c.add("ComponentName", "required text")
        name = None
    elif not COMPONENT_NAME_RE.match(name):
        c.add("ComponentName", f"{name!r} must be 1-128 characters of letters, digits, '-', '_' or '.', "
              "starting with a letter or digit ('.', '..' and '-x' are folder names or options on the hub)")

    version = get_ci(doc, "ComponentVersion")
    if not isinstance(version, str):
        c.add("ComponentVersion",
              "required; a quoted semantic version such as '1.0.0'" if version is None
              else f"{version!r} must be a quoted semantic version such as '1.0.0'")
        version = None
    else:
        try:
            Version.parse(version)
        except VersionError as exc:
            c.add("ComponentVersion", str(exc))
            version = None

    ctype = get_ci(doc, "ComponentType")
    if ctype is not None and ctype not in COMPONENT_TYPES:
        c.add("ComponentType", f"{ctype!r} is not one of {', '.join(COMPONENT_TYPES)}")

    if name and version:
        stem_ok = any(path.name == f"{name}-{version}{s}" for s in RECIPE_SUFFIXES)
        if not stem_ok:
            c.add(None, f"file name must be {name}-{version}.yaml (or .yml/.json) to match "
                        "ComponentName and ComponentVersion")

    deps = _check_dependencies(c, get_ci(doc, "ComponentDependencies"))
    _check_configuration(c, get_ci(doc, "ComponentConfiguration"))
    artifacts = _check_manifests(c, get_ci(doc, "Manifests"))

    if c.problems or name is None or version is None:
        return None, c.problems
    return Recipe(path, name, version, deps, tuple(artifacts), doc), []


def _check_dependencies(c: _Checker, deps: Any) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    if deps is None:
        return out
    if not isinstance(deps, Mapping):
        c.add("ComponentDependencies", "must be a mapping of component name -> {VersionRequirement, "
                                       "DependencyType}")
        return out
    for dep, spec in deps.items():
        where = f"ComponentDependencies.{dep}"
        if not isinstance(dep, str) or not COMPONENT_NAME_RE.match(dep):
            c.add(where, f"{dep!r} is not a component name")
            continue
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            c.add(where, "must be a mapping with VersionRequirement and DependencyType")
            continue
        req = get_ci(spec, "VersionRequirement")
        req_text = "*" if req is None else req
        if not isinstance(req_text, str):
            c.add(f"{where}.VersionRequirement", f"{req!r} must be a quoted version range such as '~2.0.0'")
            continue
        try:
            Range.parse(req_text)
        except VersionError as exc:
            c.add(f"{where}.VersionRequirement", f"not an npm-style version range: {exc}")
        dtype = get_ci(spec, "DependencyType") or "HARD"
        if not isinstance(dtype, str) or dtype.upper() not in ("HARD", "SOFT"):
            c.add(f"{where}.DependencyType", f"{dtype!r} must be HARD or SOFT")
            continue
        out[dep] = (req_text, dtype.upper())
    return out


def _check_configuration(c: _Checker, conf: Any) -> None:
    if conf is None:
        return
    if not isinstance(conf, Mapping):
        c.add("ComponentConfiguration", "must be a mapping with DefaultConfiguration")
        return
    default = get_ci(conf, "DefaultConfiguration")
    if default is not None and not isinstance(default, Mapping):
        c.add("ComponentConfiguration.DefaultConfiguration", "must be a mapping")


def _check_manifests(c: _Checker, manifests: Any) -> list[Artifact]:
    if manifests is None:
        c.add("Manifests", "required: a recipe without manifests is rejected by the nucleus")
        return []
    if not isinstance(manifests, list) or not manifests:
        c.add("Manifests", "must be a non-empty list of manifests")
        return []
    artifacts: list[Artifact] = []
    for i, man in enumerate(manifests):
        where = f"Manifests[{i}]"
        if not isinstance(man, Mapping):
            c.add(where, "must be a mapping (Platform, Lifecycle, Artifacts)")
            continue
        platform = get_ci(man, "Platform")
        if platform is not None and not isinstance(platform, Mapping):
            c.add(f"{where}.Platform", "must be a mapping such as {os: linux}")
        elif platform:
            for k, v in platform.items():
                if not isinstance(v, str):
                    c.add(f"{where}.Platform.{k}", "must be text ('*', a value, or /regex/)")
                elif len(v) > 1 and v.startswith("/") and v.endswith("/"):
                    try:
                        re.compile(v[1:-1])
                    except re.error as exc:
                        c.add(f"{where}.Platform.{k}", f"bad regular expression: {exc}")
        lifecycle = get_ci(man, "Lifecycle")
        if lifecycle is not None:
            _check_lifecycle(c, f"{where}.Lifecycle", lifecycle)
        arts = get_ci(man, "Artifacts")
        if arts is not None:
            artifacts.extend(_check_artifacts(c, f"{where}.Artifacts", arts))
    return artifacts


def _check_lifecycle(c: _Checker, where: str, lifecycle: Any) -> None:
    if not isinstance(lifecycle, Mapping):
        c.add(where, f"must be a mapping of steps ({', '.join(LIFECYCLE_STEPS)})")
        return
    known = {s.lower(): s for s in LIFECYCLE_STEPS}
    for key, body in lifecycle.items():
        name = known.get(str(key).lower())
        if name is None:
            c.add(f"{where}.{key}", f"unknown lifecycle step; allowed: {', '.join(LIFECYCLE_STEPS)}")
            continue
        if name == "Setenv":
            _check_env(c, f"{where}.{key}", body)
            continue
        if isinstance(body, str):
            continue
        if not isinstance(body, Mapping):
            c.add(f"{where}.{key}", "must be a script (text) or a mapping with Script")
            continue
        for k in body:
            if str(k).lower() not in {s.lower() for s in STEP_KEYS}:
                c.add(f"{where}.{key}.{k}", f"unknown field; allowed: {', '.join(STEP_KEYS)}")
        if not isinstance(get_ci(body, "Script"), str):
            c.add(f"{where}.{key}.Script", "required text (the shell script to run)")
        priv = get_ci(body, "RequiresPrivilege")
        if priv is not None and not isinstance(priv, bool) and str(priv).lower() not in ("true", "false"):
            c.add(f"{where}.{key}.RequiresPrivilege", f"{priv!r} must be true or false")
        timeout = get_ci(body, "Timeout")
        if timeout is not None and (isinstance(timeout, bool) or not _positive_number(timeout)):
            c.add(f"{where}.{key}.Timeout", f"{timeout!r} must be a positive number of seconds")
        skipif = get_ci(body, "Skipif")
        if skipif is not None and not (isinstance(skipif, str) and _SKIPIF_RE.match(skipif.strip())):
            c.add(f"{where}.{key}.Skipif", f"{skipif!r} must be 'onpath CMD' or 'exists FILE' "
                                            "(optionally negated with '!')")
        if _has_ci(body, "Setenv"):
            _check_env(c, f"{where}.{key}.Setenv", get_ci(body, "Setenv"))


def _positive_number(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _check_env(c: _Checker, where: str, env: Any) -> None:
    if not isinstance(env, Mapping):
        c.add(where, "must be a mapping of environment variable -> value")
        return
    for k, v in env.items():
        if not isinstance(v, str | int | float | bool):
            c.add(f"{where}.{k}", "environment values must be text or numbers")


def _check_artifacts(c: _Checker, where: str, arts: Any) -> list[Artifact]:
    if not isinstance(arts, list):
        c.add(where, "must be a list of {URI: ...}")
        return []
    out: list[Artifact] = []
    for j, art in enumerate(arts):
        w = f"{where}[{j}]"
        if not isinstance(art, Mapping):
            c.add(w, "must be a mapping with URI")
            continue
        uri = get_ci(art, "URI")
        if not isinstance(uri, str) or not uri:
            c.add(f"{w}.URI", "required text")
            continue
        scheme, sep, rest = uri.partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in ARTIFACT_SCHEMES:
            schemes = ", ".join(s + ":" for s in ARTIFACT_SCHEMES)
            c.add(f"{w}.URI", f"{uri!r}: scheme must be one of {schemes}")
            continue
        target = rest.removeprefix("//") if scheme == "s3" else rest
        if scheme == "s3" and "/" not in target:
            c.add(f"{w}.URI", f"{uri!r}: an s3 URI names a bucket and a key (s3://bucket/key)")
            continue
        if scheme == "docker" and (problem := image_ref_problem(target)) is not None:
            c.add(f"{w}.URI", f"{uri!r}: {problem}")
            continue
        if scheme != "docker" and (not target or target.endswith("/")):
            c.add(f"{w}.URI", f"{uri!r}: names no file")
            continue
        unarchive = get_ci(art, "Unarchive") or "NONE"
        if not isinstance(unarchive, str) or unarchive.upper() not in ("NONE", "ZIP"):
            c.add(f"{w}.Unarchive", f"{unarchive!r} must be NONE or ZIP")
            unarchive = "NONE"
        perm = get_ci(art, "Permission")
        if perm is not None:
            if not isinstance(perm, Mapping):
                c.add(f"{w}.Permission", "must be a mapping with Read and Execute")
            else:
                for k in ("Read", "Execute"):
                    v = get_ci(perm, k)
                    if v is not None and str(v).upper() not in ("NONE", "OWNER", "ALL"):
                        c.add(f"{w}.Permission.{k}", f"{v!r} must be NONE, OWNER or ALL")
        digest, algorithm = _check_digest(c, w, art) if scheme != "docker" else (None, None)
        out.append(Artifact(uri, scheme, target, unarchive.upper(), w, digest, algorithm))
    return out


def _check_digest(c: _Checker, w: str, art: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``Digest`` and ``Algorithm`` as given; their presence is the candidate's check (it has the file)."""
    digest, algorithm = get_ci(art, "Digest"), get_ci(art, "Algorithm")
    if digest is None and algorithm is None:
        return None, None
    algo: str | None = None
    if algorithm is None:
        c.add(f"{w}.Algorithm", f"required with Digest (e.g. {DEFAULT_DIGEST_ALGORITHM}); the nucleus "
                                "refuses an artifact digest without its algorithm")
    elif not isinstance(algorithm, str) or algorithm.upper() not in DIGEST_ALGORITHMS:
        c.add(f"{w}.Algorithm", f"{algorithm!r} is not accepted: use {', '.join(DIGEST_ALGORITHMS)} "
                                "(MD5 and SHA-1 do not protect an update against a forged artifact)")
    else:
        algo = algorithm.upper()
    if digest is None:
        c.add(f"{w}.Digest", "required with Algorithm: base64 of the artifact's hash")
        return None, algo
    if not isinstance(digest, str):
        c.add(f"{w}.Digest", "must be text: base64 of the artifact's hash")
        return None, algo
    size = hashlib.new(DIGEST_ALGORITHMS[algo]).digest_size if algo else None
    how = "base64 of the raw hash, e.g. `openssl dgst -sha256 -binary FILE | base64`"
    if size is not None and re.fullmatch(f"[0-9a-fA-F]{{{2 * size}}}", digest):
        c.add(f"{w}.Digest", f"is hex, not base64: the nucleus compares {how}")
        return None, algo
    try:
        raw = base64.b64decode(digest, validate=True)
    except (binascii.Error, ValueError):
        c.add(f"{w}.Digest", f"{digest!r} is not base64: the nucleus compares {how}")
        return None, algo
    if size is not None and len(raw) != size:
        c.add(f"{w}.Digest", f"is {len(raw)} bytes long, a {algo} digest has {size}")
        return None, algo
    return digest, algo
