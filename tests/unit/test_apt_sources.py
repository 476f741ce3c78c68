"""The lab's Debian mirror comes from the machine's apt configuration (recorded real shapes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hil_lab import images
from hil_lab.apt_sources import (
    MIRROR_ENV,
    apt_source_files,
    debian_mirror_from,
    parse_deb822,
    read_sources,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "apt"


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def _mirror(apt_dir: Path) -> str:
    return images.debian_mirror(apt_source_files(apt_dir))


def test_debian_12_container_deb822() -> None:
    apt = DATA / "debian12-container"
    # apt reads *.list and *.sources only: the renamed file is not one of them
    assert [p.name for p in apt_source_files(apt)] == ["sources.list", "debian.sources", "nodesource.sources"]
    assert _mirror(apt) == "http://deb.debian.org/debian"


def test_debian_11_one_line_sources_list() -> None:
    # bullseye, not bookworm: any suite of the main archive means a mirror that has bookworm too
    assert _mirror(DATA / "debian11-sources-list") == "http://deb.debian.org/debian"


def test_debian_cloud_mirror_list(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    shutil.copytree(DATA / "debian12-cloud", apt)
    src = apt / "sources.list.d" / "debian.sources"
    src.write_text(src.read_text().replace("/etc/apt/mirrors/", f"{apt}/mirrors/"))
    assert _mirror(apt) == "https://deb.debian.org/debian"


def test_third_party_repositories_are_not_a_debian_mirror() -> None:
    apt = DATA / "third-party-only"
    assert debian_mirror_from(read_sources(apt_source_files(apt)), "bookworm") is None
    with pytest.raises(images.NoDebianMirror, match=MIRROR_ENV):
        _mirror(apt)


def test_nothing_configured_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(images.NoDebianMirror, match=f"set {MIRROR_ENV}"):
        _mirror(tmp_path)


def test_the_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://mirror.example/debian/")
    assert _mirror(DATA / "debian12-container") == "http://mirror.example/debian"


def test_deb822_details() -> None:
    text = ("Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
            "# Types: deb\n# URIs: http://commented.example/debian\n\n"
            "Types: deb-src deb\nURIs:\n http://first.example/debian\n http://second.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n")
    sources = list(parse_deb822(text, "x.sources"))
    assert [s.uris for s in sources] == [("http://first.example/debian", "http://second.example/debian")]
    assert debian_mirror_from(sources, "bookworm") == "http://first.example/debian"


def test_the_exact_suite_beats_an_earlier_other_release(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://old.example/debian bullseye main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [ arch=amd64 ] http://new.example/debian bookworm main  # the one\n")
    assert _mirror(tmp_path) == "http://new.example/debian"


def test_the_machine_running_this_test_has_one() -> None:
    """The CI machine: the lab is built from whatever its apt says."""
    if not any(f.is_file() for f in apt_source_files()):
        pytest.skip("no apt configuration on this machine")
    assert images.debian_mirror().startswith(("http://", "https://", "file:/"))
