"""A candidate: the folder of components a release would put on a hub.

Layout (the same the Greengrass CLI takes with --recipeDir / --artifactDir)::

    DIR/recipes/<Name>-<Version>.yaml|yml|json
    DIR/artifacts/<Name>/<Version>/<files>
    DIR/images/*.tar[.gz]           optional: image archives to `docker load` on the hub
    DIR/candidate.yaml              optional manifest: description, extra image references

Image references are gathered from ``docker:`` artifact URIs, from the ``image:`` of
every service in a docker-compose file among the artifacts, and from the manifest;
each must be a valid Docker reference (hil.deploy.image_ref).
Everything is checked locally, before any device is touched.

A candidate is untrusted input too: before any file in it is read, the folder is walked
without following links, and a symbolic link that leads out of it (a key, a password
file of the CI runner would be uploaded to a hub), a link to a folder, or a special
file (FIFO, socket, device: reading one blocks or reads a device) is refused. Upload
checks every file again (``files()``), in case the folder changed since.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from hil.deploy.image_ref import image_ref_problem
from hil.deploy.recipe import (
    DEFAULT_DIGEST_ALGORITHM,
    RECIPE_SUFFIXES,
    Artifact,
    Problem,
    Recipe,
    file_digest,
    load_document,
    parse_recipe,
)
from hil.deploy.semver import Range, VersionError
from hil.errors import UserError

MANIFEST = "candidate.yaml"
IMAGE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
COMPOSE_FILES = ("docker-compose.yaml", "docker-compose.yml", "compose.yaml", "compose.yml")
_MANIFEST_KEYS = ("description", "images", "model_card")


class CandidateError(UserError):
    """The candidate folder is wrong; lists every problem, the first one locates the error."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        more = "".join(f"\n  - {p}" for p in self.problems[1:])
        extra = f"\n{len(self.problems) - 1} more problem(s):{more}" if more else ""
        super().__init__(first.message + extra, file=first.file, field=first.field)


@dataclass(frozen=True)
class CandidateIdentity:
    """What the gate records about a candidate: components, images, content hash."""

    components: dict[str, str]
    images: tuple[str, ...]
    image_archives: dict[str, str]
    """Archive file name -> sha256 of the file."""
    digest: str
    """sha256 over every file of the candidate (relative path + content)."""


@dataclass(frozen=True)
class Candidate:
    root: Path
    recipes: tuple[Recipe, ...]
    image_archives: tuple[Path, ...] = ()
    images: tuple[str, ...] = ()
    description: str = ""
    model_card: Path | None = None
    """An ML candidate's model card (candidate.yaml ``model_card``; read by hil.ml.card)."""

    @property
    def recipe_dir(self) -> Path:
        return self.root / "recipes"

    @property
    def artifact_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def components(self) -> dict[str, str]:
        """Component name -> version: what `deployment create --merge` gets."""
        return {r.name: r.version for r in self.recipes}

    def files(self) -> Iterator[tuple[Path, str]]:
        """(local file, path relative to the candidate root) of recipes and artifacts; each checked
        again (CandidateError) so that a file swapped for a link after validation is not sent."""
        for base in (self.recipe_dir, self.artifact_dir):
            if base.is_dir():
                for p in sorted(base.rglob("*")):
                    problem = _entry_problem(self.root, p)
                    if problem is not None:
                        raise CandidateError([problem])
                    if p.is_file():
                        yield p, p.relative_to(self.root).as_posix()

    @cached_property
    def identity(self) -> CandidateIdentity:
        """Computed once: hashing image archives takes a while."""
        h = hashlib.sha256()
        archives: dict[str, str] = {}
        for p in sorted(self.root.rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(self.root).as_posix()
            digest = _sha256(p)
            h.update(rel.encode() + b"\0" + digest.encode() + b"\n")
            if p in self.image_archives:
                archives[p.name] = digest
        return CandidateIdentity(self.components, self.images, archives, h.hexdigest())

def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_candidate(path: str | Path) -> Candidate:
    """Read and validate the candidate at ``path``; raises CandidateError listing every problem."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise CandidateError([Problem(str(path), None, "candidate folder not found")])
    problems = _check_tree(root)
    if problems:  # nothing in the folder is read before its links and file types are known good
        raise CandidateError(problems)
    recipes = _load_recipes(root, problems)
    _check_artifacts(root, recipes, problems)
    _check_internal_dependencies(recipes, problems)
    description, manifest_images, card = _load_manifest(root, problems)
    archives = _image_archives(root, problems)
    images = _compose_images(root, recipes, problems)
    if problems:
        raise CandidateError(problems)
    refs: list[str] = []
    for ref in (*(i for r in recipes for i in r.images), *images, *manifest_images):
        if ref not in refs:
            refs.append(ref)
    return Candidate(root, tuple(recipes), tuple(archives), tuple(refs), description, card)


def _check_tree(root: Path) -> list[Problem]:
    """Every entry under ``root``, walked without following links (see the module doc)."""
    problems: list[Problem] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            problem = _entry_problem(root, Path(folder) / name)
            if problem is not None:
                problems.append(problem)
    return problems


def _entry_problem(root: Path, path: Path) -> Problem | None:
    try:
        st = path.lstat()
    except OSError as exc:
        return Problem(str(path), None, f"cannot be read: {exc.strerror}")
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(root):
            return Problem(str(path), None, f"symbolic link to {target}, outside the candidate folder: "
                                            "refused (its target would be uploaded to the hub)")
        if not target.exists():
            return Problem(str(path), None, "symbolic link to nothing (dangling): refused")
        if target.is_dir():
            return Problem(str(path), None, "symbolic link to a folder: refused (copy the folder in)")
        st = target.stat()
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return Problem(str(path), None, "not a regular file (a FIFO, socket or device): refused")
    return None


def _load_recipes(root: Path, problems: list[Problem]) -> list[Recipe]:
    rdir = root / "recipes"
    if not rdir.is_dir():
        problems.append(Problem(str(rdir), None, "missing: a candidate needs a recipes/ folder"))
        return []
    # the CLI walks --recipeDir recursively and parses every .yaml/.yml/.json as a recipe
    files = sorted(p for p in rdir.rglob("*") if p.is_file() and p.suffix.lower() in RECIPE_SUFFIXES)
    if not files:
        problems.append(Problem(str(rdir), None, "no recipe files (<Name>-<Version>.yaml or .json)"))
    recipes: list[Recipe] = []
    seen: dict[str, Path] = {}
    for f in files:
        recipe, errs = parse_recipe(f)
        problems.extend(errs)
        if recipe is None:
            continue
        if recipe.name in seen:
            problems.append(Problem(str(f), "ComponentName",
                                    f"{recipe.name} is also defined by {seen[recipe.name].name}; "
                                    "a candidate deploys one version per component"))
            continue
        seen[recipe.name] = f
        recipes.append(recipe)
    for p in sorted(rdir.rglob("*")):
        if p.is_file() and p.suffix.lower() not in RECIPE_SUFFIXES:
            problems.append(Problem(str(p), None, "not a recipe (.yaml, .yml or .json); remove it"))
    return recipes


def _check_artifacts(root: Path, recipes: list[Recipe], problems: list[Problem]) -> None:
    adir = root / "artifacts"
    by_name = {r.name: r for r in recipes}
    if adir.is_dir():
        for comp in sorted(adir.iterdir()):
            if not comp.is_dir():
                problems.append(Problem(str(comp), None,
                                        "artifacts/ holds <ComponentName>/<Version>/ folders only"))
                continue
            recipe = by_name.get(comp.name)
            if recipe is None:
                if any(f.name.startswith(comp.name + "-") for f in (root / "recipes").rglob("*")):
                    continue  # its recipe exists but is broken: already reported
                problems.append(Problem(str(comp), None, f"no recipe for component {comp.name}"))
                continue
            for ver in sorted(comp.iterdir()):
                if not ver.is_dir() or ver.name != recipe.version:
                    problems.append(Problem(str(ver), None, f"expected only artifacts/{comp.name}/"
                                                            f"{recipe.version}/ (the recipe's version)"))
    for r in recipes:
        for art in r.artifacts:
            if art.scheme == "docker":
                if not art.pinned_image:
                    problems.append(Problem(str(r.file), f"{art.field}.URI",
                                            f"{art.uri}: pin the image by its digest (docker:name@sha256:"
                                            "<64 hex>) so that the hub runs what was tested"))
                continue
            expected = adir / r.name / r.version / art.basename
            if not expected.is_file():
                problems.append(Problem(str(r.file), f"{art.field}.URI",
                                        f"{art.uri}: artifact file missing, expected "
                                        f"{expected.relative_to(root).as_posix()}"))
                continue
            problem = _digest_problem(r, art, expected, root)
            if problem:
                problems.append(problem)


def _digest_problem(r: Recipe, art: Artifact, path: Path, root: Path) -> Problem | None:
    """Secure update (OWASP I4): every artifact carries the digest the hub verifies, and it is right."""
    rel = path.relative_to(root).as_posix()
    if art.digest is None or art.algorithm is None:
        if art.digest is None and art.algorithm is None:
            actual = file_digest(path, DEFAULT_DIGEST_ALGORITHM)
            return Problem(str(r.file), f"{art.field}.Digest",
                           "required: every artifact carries a digest the hub verifies before it installs "
                           f"it; for {rel}: Digest: '{actual}', Algorithm: {DEFAULT_DIGEST_ALGORITHM}")
        return None  # half a digest: the recipe check reported it
    actual = file_digest(path, art.algorithm)
    if actual != art.digest:
        return Problem(str(r.file), f"{art.field}.Digest",
                       f"does not match {rel} (its {art.algorithm} is '{actual}'): the artifact changed "
                       "after the recipe was made, or the recipe names the wrong file")
    return None


def _check_internal_dependencies(recipes: list[Recipe], problems: list[Problem]) -> None:
    versions = {r.name: r.version for r in recipes}
    for r in recipes:
        for dep, (req, _kind) in r.dependencies.items():
            if dep not in versions:
                continue  # provided by the hub (e.g. DockerApplicationManager): checked by the nucleus
            try:
                ok = Range.parse(req).satisfied_by(versions[dep])
            except VersionError:
                continue  # already reported by the recipe check
            if not ok:
                problems.append(Problem(str(r.file), f"ComponentDependencies.{dep}.VersionRequirement",
                                        f"{req!r} is not satisfied by {dep} {versions[dep]} "
                                        "in this candidate"))


def _load_manifest(root: Path, problems: list[Problem]) -> tuple[str, list[str], Path | None]:
    path = root / MANIFEST
    if not path.exists():
        return "", [], None
    doc, problem = load_document(path)
    if problem:
        problems.append(problem)
        return "", [], None
    if doc is None:
        return "", [], None
    if not isinstance(doc, Mapping):
        problems.append(Problem(str(path), None, "must be a mapping (description, images, model_card)"))
        return "", [], None
    for k in doc:
        if k not in _MANIFEST_KEYS:
            problems.append(Problem(str(path), str(k),
                                    f"unknown field; allowed: {', '.join(_MANIFEST_KEYS)}"))
    desc = doc.get("description") or ""
    card = _model_card_path(root, path, doc.get("model_card"), problems)
    images = doc.get("images") or []
    if not isinstance(images, list):
        problems.append(Problem(str(path), "images", "must be a list of image references"))
        return str(desc), [], card
    good: list[str] = []
    for i, ref in enumerate(images):
        why = image_ref_problem(ref)
        if why is not None:
            problems.append(Problem(str(path), f"images[{i}]", why))
        else:
            good.append(ref)
    return str(desc), good, card


def _model_card_path(root: Path, manifest: Path, value: object, problems: list[Problem]) -> Path | None:
    """The model card file named by the manifest: a file inside the candidate folder."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or Path(value).is_absolute() or ".." in Path(value).parts:
        problems.append(Problem(str(manifest), "model_card", "must be a path inside the candidate folder"))
        return None
    card = root / value
    if not card.is_file():
        problems.append(Problem(str(manifest), "model_card", f"{value}: file not found in the candidate"))
        return None
    from hil.ml.card import load_card  # the card is candidate input: checked with the rest

    try:
        load_card(card)
    except UserError as exc:
        problems.append(Problem(str(card), exc.field, exc.detail))
        return None
    return card


def _image_archives(root: Path, problems: list[Problem]) -> list[Path]:
    idir = root / "images"
    if not idir.exists():
        return []
    if not idir.is_dir():
        problems.append(Problem(str(idir), None, "must be a folder of image archives"))
        return []
    out = []
    for p in sorted(idir.iterdir()):
        if p.is_file() and p.name.endswith(IMAGE_SUFFIXES):
            out.append(p)
        else:
            problems.append(Problem(str(p), None, "images/ holds image archives "
                                    f"({', '.join(IMAGE_SUFFIXES)}) made by `docker save`"))
    return out


def _compose_images(root: Path, recipes: list[Recipe], problems: list[Problem]) -> list[str]:
    out: list[str] = []
    for r in recipes:
        vdir = root / "artifacts" / r.name / r.version
        for name in COMPOSE_FILES:
            f = vdir / name
            if not f.is_file():
                continue
            try:
                doc = yaml.safe_load(f.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                problems.append(Problem(str(f), None, f"not a valid compose file: {exc}"))
                continue
            except RecursionError:
                problems.append(Problem(str(f), None, "not a valid compose file: nesting is too deep"))
                continue
            services = doc.get("services") if isinstance(doc, Mapping) else None
            if not isinstance(services, Mapping) or not services:
                problems.append(Problem(str(f), "services", "a compose file needs a services mapping"))
                continue
            for sname, svc in services.items():
                image = svc.get("image") if isinstance(svc, Mapping) else None
                if not isinstance(image, str) or not image:
                    # a build: section cannot be built on a hub without network access
                    problems.append(Problem(str(f), f"services.{sname}.image",
                                            "required: hubs run prebuilt images"))
                elif (why := image_ref_problem(image)) is not None:
                    problems.append(Problem(str(f), f"services.{sname}.image", why))
                elif image not in out:
                    out.append(image)
    return out
