"""Candidate folders: the shipped examples validate; broken ones give errors naming file and field."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hil.deploy.candidate import CandidateError, load_candidate
from hil.deploy.image_ref import parse_image_ref
from hil.errors import UserError

CANDIDATES = Path(__file__).resolve().parents[2] / "candidates"
WEB, APP, DB = (f"registry.lab:5000/hil/{n}:1.0" for n in ("web", "app", "db"))
RECIPE = "recipes/com.hbs.hub.Container-1.0.0.yaml"
COMPOSE = "artifacts/com.hbs.hub.Container/1.0.0/docker-compose.yaml"
COMPOSE_DIGEST = "O6IS1gxeTvh5nLuQ6KPsx9Ko+8nTmIy63swaQJJGHQA="
"""base64 of the SHA-256 of candidates/good's compose file (as in its recipe)."""
WEB_PINNED = "registry.lab:5000/hil/web@sha256:" + "a1" * 32


def test_good_candidate_is_the_product_brief_example() -> None:
    c = load_candidate(CANDIDATES / "good")
    assert c.components == {"com.hbs.hub.Container": "1.0.0"}
    [r] = c.recipes
    assert r.dependencies == {"aws.greengrass.DockerApplicationManager": ("~2.0.0", "HARD")}
    lifecycle = r.raw["Manifests"][0]["Lifecycle"]
    assert lifecycle["Startup"]["RequiresPrivilege"] is True
    assert lifecycle["Startup"]["Script"].endswith("docker-compose up -d")
    assert "{artifacts:path}" in lifecycle["Startup"]["Script"]
    assert lifecycle["Shutdown"]["Script"].endswith("docker-compose down")
    assert set(c.images) == {WEB, APP, DB}
    assert c.identity.components == c.components
    assert len(c.identity.digest) == 64


def test_bad_candidate_validates_locally() -> None:
    # its defect is at run time (Startup exits 1), not in the recipe
    c = load_candidate(CANDIDATES / "bad")
    assert c.components == {"com.hbs.hub.Broken": "1.0.0"}
    startup = c.recipes[0].raw["Manifests"][0]["Lifecycle"]["Startup"]["Script"]
    assert startup == "sh {artifacts:path}/start.sh"
    assert "exit 1" in (CANDIDATES / "bad/artifacts/com.hbs.hub.Broken/1.0.0/start.sh").read_text()


def test_upgrade_candidate_is_a_newer_container() -> None:
    good, up = load_candidate(CANDIDATES / "good"), load_candidate(CANDIDATES / "upgrade")
    assert up.components == {"com.hbs.hub.Container": "1.1.0"}
    assert up.identity.digest != good.identity.digest


@pytest.fixture
def good(tmp_path: Path) -> Path:
    dst = tmp_path / "cand"
    shutil.copytree(CANDIDATES / "good", dst)
    return dst


def problems(path: Path) -> CandidateError:
    with pytest.raises(CandidateError) as exc:
        load_candidate(path)
    assert isinstance(exc.value, UserError)  # printed without a traceback by the CLI
    return exc.value


def test_malformed_yaml_names_file_and_line(good: Path) -> None:
    (good / RECIPE).write_text("RecipeFormatVersion: '2020-01-25'\nComponentName: [unclosed\n")
    err = problems(good)
    assert err.file == str(good / RECIPE)
    assert "not valid YAML at line" in str(err)


def test_missing_artifact_names_recipe_field_and_expected_path(good: Path) -> None:
    (good / "artifacts/com.hbs.hub.Container/1.0.0/docker-compose.yaml").unlink()
    err = problems(good)
    assert err.file == str(good / RECIPE)
    assert err.field == "Manifests[0].Artifacts[0].URI"
    assert "artifacts/com.hbs.hub.Container/1.0.0/docker-compose.yaml" in str(err)


def _edit(good: Path, old: str, new: str) -> None:
    p = good / RECIPE
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new))


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("RecipeFormatVersion: '2020-01-25'", "RecipeFormatVersion: '2021-01-01'", "RecipeFormatVersion",
     "must be '2020-01-25'"),
    ("ComponentVersion: '1.0.0'", "ComponentVersion: 1.0", "ComponentVersion", "quoted semantic version"),
    ("VersionRequirement: ~2.0.0", "VersionRequirement: '~>=two'",
     "ComponentDependencies.aws.greengrass.DockerApplicationManager.VersionRequirement", "npm-style"),
    ("DependencyType: HARD", "DependencyType: STRONG",
     "ComponentDependencies.aws.greengrass.DockerApplicationManager.DependencyType", "HARD or SOFT"),
    ("      Startup:", "      Launch:", "Manifests[0].Lifecycle.Launch", "unknown lifecycle step"),
    ("        RequiresPrivilege: true\n        Script: cd",
     "        RequiresPrivilege: maybe\n        Script: cd",
     "Manifests[0].Lifecycle.Startup.RequiresPrivilege", "true or false"),
    ("        Timeout: 60", "        Timeout: -1", "Manifests[0].Lifecycle.Shutdown.Timeout", "positive"),
    ("URI: s3://", "URI: ftp://", "Manifests[0].Artifacts[0].URI", "scheme must be one of"),
])
def test_recipe_field_errors(good: Path, old: str, new: str, field: str, message: str) -> None:
    _edit(good, old, new)
    err = problems(good)
    assert err.file == str(good / RECIPE)
    assert err.field == field, str(err)
    assert message in str(err)


def test_name_with_bad_characters_and_wrong_file_name(good: Path) -> None:
    _edit(good, "ComponentName: com.hbs.hub.Container", "ComponentName: com/hbs hub")
    err = problems(good)
    assert err.field == "ComponentName" and "letters, digits" in str(err)


def test_file_name_must_match_name_and_version(good: Path) -> None:
    (good / RECIPE).rename(good / "recipes/container.yaml")
    err = problems(good)
    assert "com.hbs.hub.Container-1.0.0.yaml" in str(err)


def test_recipe_without_manifests_is_rejected(good: Path) -> None:
    p = good / RECIPE
    p.write_text(p.read_text().split("Manifests:")[0])
    err = problems(good)
    assert err.field == "Manifests" and "without manifests" in str(err)


def test_every_problem_is_listed(good: Path) -> None:
    _edit(good, "RecipeFormatVersion: '2020-01-25'", "RecipeFormatVersion: '1999-01-01'")
    _edit(good, "      Startup:", "      Begin:")
    err = problems(good)
    assert len(err.problems) == 2 and "1 more problem" in str(err)


def test_keys_are_case_insensitive_and_json_works(good: Path) -> None:
    (good / RECIPE).unlink()
    recipe = {
        "recipeformatversion": "2020-01-25", "COMPONENTNAME": "com.hbs.hub.Container",
        "componentVersion": "1.0.0",
        "componentdependencies": {
            "aws.greengrass.DockerApplicationManager": {"versionrequirement": "~2.0.0"}},
        "manifests": [{"platform": {"os": "linux"},
                       "lifecycle": {"startup": {"script": "docker-compose up -d",
                                                 "requiresprivilege": True}},
                       "artifacts": [{"uri": "greengrass:docker-compose.yaml", "DIGEST": COMPOSE_DIGEST,
                                      "algorithm": "sha-256"},
                                     {"Uri": f"docker:{WEB_PINNED}"}]}],
    }
    (good / "recipes/com.hbs.hub.Container-1.0.0.json").write_text(json.dumps(recipe))
    c = load_candidate(good)
    assert c.components == {"com.hbs.hub.Container": "1.0.0"}
    assert c.recipes[0].images == (WEB_PINNED,)
    assert c.recipes[0].artifacts[0].algorithm == "SHA-256"


def test_bad_docker_reference(good: Path) -> None:
    _edit(good, "    Artifacts:\n", "    Artifacts:\n      - URI: 'docker:Not A Ref!'\n")
    err = problems(good)
    assert err.field == "Manifests[0].Artifacts[0].URI" and "image reference" in str(err)


def test_artifacts_of_unknown_component_or_version(good: Path) -> None:
    (good / "artifacts/com.hbs.hub.Other/1.0.0").mkdir(parents=True)
    (good / "artifacts/com.hbs.hub.Container/0.9.0").mkdir()
    err = problems(good)
    text = str(err)
    assert "no recipe for component com.hbs.hub.Other" in text
    assert "artifacts/com.hbs.hub.Container/1.0.0/" in text


def test_internal_dependency_range_is_checked(good: Path) -> None:
    other = good / "recipes/com.hbs.hub.Helper-2.0.0.yaml"
    other.write_text("RecipeFormatVersion: '2020-01-25'\nComponentName: com.hbs.hub.Helper\n"
                     "ComponentVersion: '2.0.0'\nManifests:\n  - Lifecycle: {}\n")
    _edit(good, "ComponentDependencies:\n", "ComponentDependencies:\n  com.hbs.hub.Helper:\n"
                                            "    VersionRequirement: ^1.0.0\n")
    err = problems(good)
    assert "not satisfied by com.hbs.hub.Helper 2.0.0" in str(err)


def test_compose_service_without_image(good: Path) -> None:
    f = good / COMPOSE
    f.write_text("services:\n  web:\n    build: .\n")
    err = problems(good)
    assert {p.field for p in err.problems} == {"services.web.image", "Manifests[0].Artifacts[0].Digest"}


def test_missing_folder_and_empty_recipes(tmp_path: Path) -> None:
    assert "candidate folder not found" in str(problems(tmp_path / "nope"))
    (tmp_path / "recipes").mkdir()
    assert "no recipe files" in str(problems(tmp_path))


def test_manifest_unknown_field_and_images(good: Path) -> None:
    (good / "candidate.yaml").write_text("images: [registry.lab:5000/hil/extra:2]\ncolour: blue\n")
    err = problems(good)
    assert err.field == "colour"
    (good / "candidate.yaml").write_text("images: [registry.lab:5000/hil/extra:2]\n")
    assert load_candidate(good).images[-1] == "registry.lab:5000/hil/extra:2"


def test_image_archives_are_part_of_identity(good: Path) -> None:
    (good / "images").mkdir()
    (good / "images/web.tar").write_bytes(b"not really a tar")
    c = load_candidate(good)
    assert [p.name for p in c.image_archives] == ["web.tar"]
    assert set(c.identity.image_archives) == {"web.tar"}
    (good / "images/notes.txt").write_text("x")
    assert "image archives" in str(problems(good))


# -- OWASP I4: every artifact carries a digest, and it is the file's ---------------------------------

def _digest_lines(good: Path, digest: str | None, algorithm: str | None = "SHA-256") -> None:
    text = (good / RECIPE).read_text()
    old = f"        Digest: {COMPOSE_DIGEST}\n        Algorithm: SHA-256\n"
    assert old in text
    new = (f"        Digest: {digest}\n" if digest is not None else "") + (
        f"        Algorithm: {algorithm}\n" if algorithm is not None else "")
    (good / RECIPE).write_text(text.replace(old, new))


def test_shipped_candidates_carry_a_digest_for_every_artifact() -> None:
    from hil.deploy.recipe import file_digest

    for name in ("good", "upgrade", "bad", "outdated"):
        c = load_candidate(CANDIDATES / name)
        arts = [(r, a) for r in c.recipes for a in r.artifacts]
        assert arts, name
        for r, a in arts:
            assert a.algorithm == "SHA-256" and a.digest, (name, a)
            assert a.digest == file_digest(CANDIDATES / name / "artifacts" / r.name / r.version / a.basename)


def test_artifact_without_a_digest_is_refused_with_the_value_to_use(good: Path) -> None:
    _digest_lines(good, None, None)
    err = problems(good)
    assert err.file == str(good / RECIPE) and err.field == "Manifests[0].Artifacts[0].Digest"
    assert "required: every artifact carries a digest" in str(err)
    assert f"Digest: '{COMPOSE_DIGEST}', Algorithm: SHA-256" in str(err)


def test_one_tampered_byte_is_refused(good: Path) -> None:
    f = good / COMPOSE
    data = bytearray(f.read_bytes())
    data[10] ^= 0x01
    f.write_bytes(bytes(data))
    err = problems(good)
    assert err.field == "Manifests[0].Artifacts[0].Digest" and len(err.problems) == 1
    assert f"does not match {COMPOSE}" in str(err)


@pytest.mark.parametrize(("digest", "algorithm", "field", "words"), [
    (COMPOSE_DIGEST, None, "Algorithm", "required with Digest"),
    (COMPOSE_DIGEST, "MD5", "Algorithm", "'MD5' is not accepted"),
    (COMPOSE_DIGEST, "SHA-1", "Algorithm", "'SHA-1' is not accepted"),
    ("3ba212d60c5e4ef8799cbb90e8a3ecc7d2a8fbc9d3988cbadecc1a4092461d00", "SHA-256", "Digest",
     "is hex, not base64"),
    ("not*base64", "SHA-256", "Digest", "is not base64"),
    (COMPOSE_DIGEST, "SHA-512", "Digest", "a SHA-512 digest has 64"),
    (None, "SHA-256", "Digest", "required with Algorithm"),
])
def test_digest_and_algorithm_fields(good: Path, digest: str | None, algorithm: str | None, field: str,
                                     words: str) -> None:
    _digest_lines(good, digest, algorithm)
    err = problems(good)
    assert err.field == f"Manifests[0].Artifacts[0].{field}", str(err)
    assert words in str(err)


def test_image_artifact_must_be_pinned_by_digest(good: Path) -> None:
    _edit(good, "    Artifacts:\n", "    Artifacts:\n      - URI: docker:registry.lab:5000/hil/web:1.0\n")
    err = problems(good)
    assert err.field == "Manifests[0].Artifacts[0].URI" and "pin the image by its digest" in str(err)
    _edit(good, "docker:registry.lab:5000/hil/web:1.0", f"docker:{WEB_PINNED}")
    assert load_candidate(good).images[0] == WEB_PINNED


# -- hostile candidates: links, special files, names, image references -------------------------

def test_symlink_leaving_the_candidate_is_refused_before_anything_is_read(good: Path, tmp_path: Path) -> None:
    secret = tmp_path / "runner_key"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    link = good / "artifacts/com.hbs.hub.Container/1.0.0/id_ed25519"
    link.symlink_to(secret)
    err = problems(good)
    assert err.file == str(link)
    assert "outside the candidate folder" in str(err) and str(secret) in str(err)
    (good / "recipes/extra.yaml").symlink_to("/etc/passwd")
    assert len(problems(good).problems) == 2


def test_symlinks_inside_the_candidate_are_fine_but_folder_links_are_not(good: Path) -> None:
    art = good / "artifacts/com.hbs.hub.Container/1.0.0"
    (good / "notes.txt").write_text("release notes\n")
    (art / "notes.txt").symlink_to(good / "notes.txt")
    load_candidate(good)
    (art / "more").symlink_to(good / "recipes", target_is_directory=True)
    assert "symbolic link to a folder" in str(problems(good))


def test_special_files_are_refused_without_blocking(good: Path) -> None:
    fifo = good / "recipes/com.hbs.hub.Other-1.0.0.yaml"
    os.mkfifo(fifo)  # reading it would block for ever
    err = problems(good)
    assert err.file == str(fifo) and "not a regular file" in str(err)


def test_a_file_swapped_for_a_link_after_validation_is_not_uploaded(good: Path, tmp_path: Path) -> None:
    cand = load_candidate(good)
    compose = good / COMPOSE
    compose.unlink()
    compose.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_text("x")
    with pytest.raises(CandidateError, match="outside the candidate folder"):
        list(cand.files())


@pytest.mark.parametrize("name", ["..", ".", "-rf", ".hidden"])
def test_dot_and_option_like_component_names_are_refused(good: Path, name: str) -> None:
    _edit(good, "ComponentName: com.hbs.hub.Container", f"ComponentName: '{name}'")
    err = problems(good)
    assert err.field == "ComponentName" and "starting with a letter or digit" in str(err)


@pytest.mark.parametrize("ref", [
    "Registry.lab:5000/hil/Web:1.0",         # upper case in the path
    "registry.lab:5000/hil/web:1.0; rm -rf /",
    "--privileged",
    "web:1.0:2.0",
    "web@sha256:xyz",
    "web@sha256:" + "A1" * 32,               # digest hex is lower case
    "a" * 256,
    "registry.lab:5000/hil/web:-latest",
])
def test_bad_image_references_are_refused_in_compose_and_manifest(good: Path, ref: str) -> None:
    compose = good / COMPOSE
    compose.write_text(compose.read_text().replace(WEB, ref, 1))
    found = [p for p in problems(good).problems if p.file == str(compose)]  # (and the digest changed)
    assert [p.field for p in found] == ["services.web.image"], found
    (good / "candidate.yaml").write_text(f"images: [{json.dumps(ref)}]\n")
    assert any(p.field == "images[0]" for p in problems(good).problems)


@pytest.mark.parametrize("ref", [
    "nginx", "nginx:1.25-alpine", "library/redis:7", "registry.lab:5000/hil/web:1.0",
    "localhost/a__b/c-d.e:x", "[fd00::1]:5000/x/y:1", "web@sha256:" + "a1" * 32,
    "registry.lab:5000/hil/web:1.0@sha256:" + "0f" * 32,
])
def test_good_image_references_pass(ref: str) -> None:
    assert parse_image_ref(ref).name
