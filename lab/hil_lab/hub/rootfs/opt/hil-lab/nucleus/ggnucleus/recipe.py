"""Component recipes: parsing (YAML/JSON, case-insensitive keys), platform matching, interpolation."""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .semver import Range, Version, VersionError

NAME_RE = re.compile(r"^[a-zA-Z0-9-_.]+$")
DEFAULT_TIMEOUTS = {"install": 120, "startup": 120, "shutdown": 15, "recover": 60, "run": None, "bootstrap": 120}
STEP_NAMES = {"install": "Install", "run": "Run", "startup": "Startup", "shutdown": "Shutdown",
              "recover": "Recover", "bootstrap": "Bootstrap"}


class RecipeError(ValueError):
    pass


def ci(mapping: Any, key: str, default: Any = None) -> Any:
    """Case-insensitive lookup of a recipe key, as the nucleus deserializer does."""
    if not isinstance(mapping, dict):
        return default
    if key in mapping:
        return mapping[key]
    low = key.lower()
    for k, v in mapping.items():
        if str(k).lower() == low:
            return v
    return default


def device_platform() -> dict[str, str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "aarch64", "arm64": "aarch64",
            "armv7l": "arm", "armv6l": "arm", "armv8l": "arm", "i386": "x86", "i686": "x86"}.get(machine, machine)
    return {"os": "linux", "architecture": arch}


# Names that denote the same architecture (recipes in the wild use both spellings).
_ARCH_ALIASES = [{"amd64", "x86_64", "x64"}, {"aarch64", "arm64"}, {"arm", "armv7l", "armv7", "armv6l"},
                 {"x86", "i386", "i686"}]


def _value_matches(wanted: Any, actual: str, key: str) -> bool:
    w = str(wanted).strip()
    if w.lower() in ("*", "all", "any"):
        return True
    if len(w) >= 2 and w.startswith("/") and w.endswith("/"):
        return re.fullmatch(w[1:-1], actual) is not None
    if w.lower() == actual.lower():
        return True
    if key == "architecture":
        return any(w.lower() in group and actual.lower() in group for group in _ARCH_ALIASES)
    return False


def platform_matches(spec: Any, device: dict[str, str]) -> bool:
    if spec is None:
        return True
    if not isinstance(spec, dict):
        return False
    for key, wanted in spec.items():
        k = str(key).lower()
        if k not in device:
            # Attributes the device does not have (e.g. architecture.detail) only match wildcards.
            if str(wanted).strip().lower() not in ("*", "all", "any"):
                return False
            continue
        if not _value_matches(wanted, device[k], k):
            return False
    return True


@dataclass
class Step:
    name: str  # Install, Run, ...
    script: str
    privileged: bool = False
    skipif: str | None = None
    timeout: float | None = None
    setenv: dict[str, str] = field(default_factory=dict)


@dataclass
class Dependency:
    requirement: str
    hard: bool


@dataclass
class Recipe:
    name: str
    version: str
    component_type: str
    default_config: dict[str, Any]
    dependencies: dict[str, Dependency]
    lifecycle: dict[str, Any]
    artifacts: list[dict[str, Any]]
    text: str
    fmt: str  # "yaml" | "json"

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.{self.fmt}"


def _truthy(v: Any) -> bool:
    return v is True or str(v).strip().lower() == "true"


def load_text(text: str, fmt: str) -> Any:
    if fmt == "json":
        return json.loads(text)
    try:
        import yaml  # PyYAML (python3-yaml in the hub)
    except ImportError as exc:  # pragma: no cover - only without PyYAML
        raise RecipeError("YAML recipes need PyYAML") from exc
    return yaml.safe_load(text)


def parse_recipe(text: str, fmt: str, device: dict[str, str] | None = None, source: str = "") -> Recipe:
    where = f" ({source})" if source else ""
    try:
        doc = load_text(text, fmt)
    except Exception as exc:
        raise RecipeError(f"Failed to parse recipe{where}: {exc}") from exc
    if not isinstance(doc, dict):
        raise RecipeError(f"Recipe is not a mapping{where}")
    fmt_version = ci(doc, "RecipeFormatVersion")
    if fmt_version is not None and str(fmt_version) != "2020-01-25":
        raise RecipeError(f"Unsupported RecipeFormatVersion {fmt_version}{where}")
    name = ci(doc, "ComponentName")
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 128:
        raise RecipeError(f"Invalid or missing ComponentName {name!r}{where}")
    version = ci(doc, "ComponentVersion")
    try:
        Version.parse(str(version))
    except VersionError as exc:
        raise RecipeError(f"Invalid ComponentVersion {version!r} for {name}{where}") from exc
    deps: dict[str, Dependency] = {}
    for dep_name, dep in (ci(doc, "ComponentDependencies") or {}).items():
        req = str(ci(dep, "VersionRequirement", "*") or "*")
        try:
            Range.parse(req)
        except VersionError as exc:
            raise RecipeError(f"Invalid VersionRequirement {req!r} for dependency {dep_name} of {name}") from exc
        dtype = str(ci(dep, "DependencyType", "HARD") or "HARD").upper()
        deps[str(dep_name)] = Dependency(req, dtype != "SOFT")
    manifests = ci(doc, "Manifests")
    if not isinstance(manifests, list) or not manifests:
        raise RecipeError(f"Recipe of {name}-{version} has no manifests{where}")
    dev = device or device_platform()
    chosen = next((m for m in manifests if isinstance(m, dict) and platform_matches(ci(m, "Platform"), dev)), None)
    if chosen is None:
        raise RecipeError(f"Recipe of {name}-{version} has no manifest matching platform {dev}")
    lifecycle = ci(chosen, "Lifecycle")
    if lifecycle is None:
        # Old-style recipes: a global Lifecycle keyed by selection names.
        top = ci(doc, "Lifecycle") or {}
        selections = [str(s) for s in (ci(chosen, "Selections") or [])] + ["all"]
        lifecycle = next((ci(top, s) for s in selections if ci(top, s) is not None), top)
    config = ci(ci(doc, "ComponentConfiguration") or {}, "DefaultConfiguration") or {}
    artifacts = ci(chosen, "Artifacts") or []
    return Recipe(name=name, version=str(version), component_type=str(ci(doc, "ComponentType") or "aws.greengrass.generic"),
                  default_config=config if isinstance(config, dict) else {}, dependencies=deps,
                  lifecycle=lifecycle if isinstance(lifecycle, dict) else {},
                  artifacts=[a for a in artifacts if isinstance(a, dict)], text=text, fmt=fmt)


def load_recipe_file(path: Path, device: dict[str, str] | None = None) -> Recipe:
    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    return parse_recipe(path.read_text(encoding="utf-8"), fmt, device, str(path))


def recipe_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in (".yaml", ".yml", ".json"))


def lifecycle_steps(lifecycle: dict[str, Any]) -> tuple[dict[str, str], dict[str, Step]]:
    """The global Setenv and the steps of a (interpolated) lifecycle section."""
    setenv = {str(k): str(v) for k, v in (ci(lifecycle, "Setenv") or {}).items()}
    steps: dict[str, Step] = {}
    for key, title in STEP_NAMES.items():
        raw = ci(lifecycle, key)
        if raw is None:
            continue
        if isinstance(raw, dict):
            script = ci(raw, "Script")
            if script is None:
                continue
            timeout = ci(raw, "Timeout")
            steps[title] = Step(title, str(script), _truthy(ci(raw, "RequiresPrivilege", False)),
                                ci(raw, "Skipif"), float(timeout) if timeout is not None else DEFAULT_TIMEOUTS[key],
                                {str(k): str(v) for k, v in (ci(raw, "Setenv") or {}).items()})
        else:
            steps[title] = Step(title, str(raw), False, None, DEFAULT_TIMEOUTS[key])
    return setenv, steps


# ---- interpolation -----------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([^{}:\s]+):([^{}]+)\}")


@dataclass
class InterpolationContext:
    root: Path
    name: str
    version: str
    thing_name: str
    configuration: dict[str, Any]
    dependencies: dict[str, tuple[str, dict[str, Any]]]  # direct deps: name -> (version, configuration)


def json_pointer(doc: Any, pointer: str) -> tuple[bool, Any]:
    if pointer in ("", "/"):
        return True, doc
    node = doc
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _component_value(ctx: InterpolationContext, name: str, version: str, config: dict[str, Any],
                     namespace: str, key: str) -> str | None:
    if namespace == "artifacts" and key == "path":
        return str(ctx.root / "packages" / "artifacts" / name / version)
    if namespace == "artifacts" and key == "decompressedPath":
        return str(ctx.root / "packages" / "artifacts-unarchived" / name / version)
    if namespace == "work" and key == "path":
        return str(ctx.root / "work" / name)
    if namespace == "configuration" and key.startswith("/"):
        found, value = json_pointer(config, key)
        return _as_text(value) if found else None
    return None


def interpolate(text: str, ctx: InterpolationContext) -> str:
    def repl(m: re.Match[str]) -> str:
        namespace, key = m.group(1), m.group(2)
        value: str | None = None
        if namespace == "kernel" and key == "rootPath":
            value = str(ctx.root)
        elif namespace == "iot" and key == "thingName":
            value = ctx.thing_name
        elif namespace in ("artifacts", "work", "configuration"):
            value = _component_value(ctx, ctx.name, ctx.version, ctx.configuration, namespace, key)
        elif namespace in ctx.dependencies and ":" in key:
            dep_version, dep_config = ctx.dependencies[namespace]
            sub_ns, sub_key = key.split(":", 1)
            value = _component_value(ctx, namespace, dep_version, dep_config, sub_ns, sub_key)
        return m.group(0) if value is None else value

    return _PLACEHOLDER.sub(repl, text)


def interpolate_tree(node: Any, ctx: InterpolationContext) -> Any:
    if isinstance(node, str):
        return interpolate(node, ctx)
    if isinstance(node, dict):
        return {k: interpolate_tree(v, ctx) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, ctx) for v in node]
    return node
