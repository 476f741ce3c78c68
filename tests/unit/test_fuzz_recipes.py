"""Fuzz the recipe and candidate loaders: a broken candidate only ever gives CandidateError.

``parse_recipe`` reports problems (never raises); ``load_candidate`` raises CandidateError
(a UserError) or returns a candidate. Inputs: raw bytes and YAML-ish text as a recipe,
the good example recipe with wrong values spliced in, and broken manifests and compose files.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.deploy.candidate import CandidateError, load_candidate
from hil.deploy.recipe import parse_recipe
from hil.errors import HilError

REPO = Path(__file__).resolve().parents[2]
GOOD = REPO / "candidates" / "good"
RECIPE_NAME = "com.hbs.hub.Container-1.0.0"
FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

KEYS = ["RecipeFormatVersion", "ComponentName", "ComponentVersion", "ComponentType", "ComponentDependencies",
        "VersionRequirement", "DependencyType", "ComponentConfiguration", "DefaultConfiguration",
        "Manifests", "Platform", "os", "Lifecycle", "Install", "Run", "Startup", "Shutdown", "Setenv",
        "Script", "RequiresPrivilege", "Timeout", "Skipif", "Artifacts", "URI", "Unarchive", "Permission",
        "Read", "Execute", "services", "image", "images", "description", "", "manifests"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70), st.floats(),
    st.text(max_size=20), st.sampled_from(KEYS), st.dates(),
    st.sampled_from(["~2.0.0", ">=1 <0", "1.0.0", "01.0.0", "*", "^", "x.y.z", "/[/", "s3://", "s3://b/",
                     "docker:", "docker:UPPER", "greengrass:..", "greengrass:a/../../x", "s3://b/\x00",
                     "onpath", "!exists /x", "2020-01-25", "ZIP", "ALL", "docker:hello-world:latest"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
                                            inner, max_size=4)),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def base_recipe() -> dict[str, Any]:
    doc = yaml.safe_load((GOOD / "recipes" / f"{RECIPE_NAME}.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-candidate")


def _fresh_candidate(work: Path) -> Path:
    root = work / "cand"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(GOOD, root)
    return root


def _check_candidate(root: Path) -> None:
    try:
        load_candidate(root)
    except HilError as exc:
        assert isinstance(exc, CandidateError), f"{type(exc).__name__}: {exc}"
        assert exc.file, "a candidate problem names its file"


def _check_recipe(path: Path) -> None:
    recipe, problems = parse_recipe(path)
    assert recipe is None or not problems
    for p in problems:
        assert p.file == str(path) and p.message


def test_good_candidate_loads(work: Path) -> None:
    assert load_candidate(_fresh_candidate(work)).components == {"com.hbs.hub.Container": "1.0.0"}


@FUZZ
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".yaml", ".json"]))
def test_arbitrary_bytes_as_recipe(work: Path, raw: bytes, suffix: str) -> None:
    root = _fresh_candidate(work)
    target = root / "recipes" / f"{RECIPE_NAME}.yaml"
    target.unlink()
    path = target.with_suffix(suffix)
    path.write_bytes(raw)
    _check_recipe(path)
    _check_candidate(root)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _splice(doc: dict[str, Any], edits: list[tuple[int, Any]], key: str | None) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for index, value in edits:
        paths = _paths(doc)[1:]
        where = paths[index % len(paths)]
        node: Any = doc
        with contextlib.suppress(KeyError, IndexError, TypeError):
            for p in where[:-1]:
                node = node[p]
            if key is not None and isinstance(node, dict):
                node[key] = value
            else:
                node[where[-1]] = value
    return doc


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), values), min_size=1, max_size=4),
       key=st.one_of(st.none(), st.sampled_from(KEYS)), as_json=st.booleans())
def test_structured_but_wrong_recipe(work: Path, base_recipe: dict[str, Any], edits: list[tuple[int, Any]],
                                     key: str | None, as_json: bool) -> None:
    doc = _splice(base_recipe, edits, key)
    root = _fresh_candidate(work)
    target = root / "recipes" / f"{RECIPE_NAME}.yaml"
    if as_json:
        target.unlink()
        target = target.with_suffix(".json")
        target.write_text(json.dumps(doc, default=str))
    else:
        target.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _check_recipe(target)
    _check_candidate(root)


@FUZZ
@given(manifest=values, compose=values)
def test_wrong_manifest_and_compose_file(work: Path, manifest: Any, compose: Any) -> None:
    root = _fresh_candidate(work)
    (root / "candidate.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True))
    compose_file = root / "artifacts" / "com.hbs.hub.Container" / "1.0.0" / "docker-compose.yaml"
    compose_file.write_text(yaml.safe_dump(compose, allow_unicode=True))
    _check_candidate(root)


@pytest.mark.parametrize("text", [
    "[" * 5000,
    "Manifests: " + "[" * 3000,
    "RecipeFormatVersion: '2020-01-25'\nComponentName: !!python/name:os.system\n",
    "\ufeff{\"RecipeFormatVersion\": 1e999}",
])
def test_known_nasty_recipes(work: Path, text: str) -> None:
    root = _fresh_candidate(work)
    path = root / "recipes" / f"{RECIPE_NAME}.yaml"
    path.write_text(text)
    _check_recipe(path)
    _check_candidate(root)


@pytest.mark.parametrize("layout", ["artifact-file-instead-of-folder", "recipes-is-a-file",
                                    "images-is-a-file",
                                    "compose-is-a-folder", "missing-artifact"])
def test_odd_layouts(work: Path, layout: str) -> None:
    root = _fresh_candidate(work)
    art = root / "artifacts" / "com.hbs.hub.Container"
    if layout == "artifact-file-instead-of-folder":
        shutil.rmtree(art)
        art.write_text("x")
    elif layout == "recipes-is-a-file":
        shutil.rmtree(root / "recipes")
        (root / "recipes").write_text("x")
    elif layout == "images-is-a-file":
        (root / "images").write_text("x")
    elif layout == "compose-is-a-folder":
        (art / "1.0.0" / "docker-compose.yaml").unlink()
        (art / "1.0.0" / "docker-compose.yaml").mkdir()
    else:
        (art / "1.0.0" / "docker-compose.yaml").unlink()
    with pytest.raises(CandidateError):
        load_candidate(root)


@pytest.mark.parametrize("text", ["[" * 5000, "services: {a: {image: " + "[" * 3000 + "}}", "\xff\xfe"])
def test_known_nasty_compose_files(work: Path, text: str) -> None:
    root = _fresh_candidate(work)
    compose = root / "artifacts" / "com.hbs.hub.Container" / "1.0.0" / "docker-compose.yaml"
    compose.write_text(text)
    with pytest.raises(CandidateError, match="compose"):
        load_candidate(root)
