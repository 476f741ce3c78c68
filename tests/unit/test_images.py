"""Input-hash logic of lab/hil_lab/images.py: a tag changes exactly when an input changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hil_lab import images


@pytest.fixture()
def hub_context(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    (root / "rootfs/usr/local/sbin").mkdir(parents=True)
    (root / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY rootfs/ /\n")
    init = root / "rootfs/usr/local/sbin/hil-lab-init"
    init.write_text("#!/bin/sh\necho boot\n")
    init.chmod(0o755)
    return root


BASE = "hil-lab/base:0123456789abcdef"


def test_unchanged_inputs_give_the_same_tag(hub_context: Path) -> None:
    assert images.hub_tag(BASE, hub_context) == images.hub_tag(BASE, hub_context)
    assert images.hub_tag(BASE, hub_context).startswith("hil-lab/hub:")


def test_changing_a_rootfs_file_changes_the_hub_tag(hub_context: Path) -> None:
    before = images.hub_tag(BASE, hub_context)
    (hub_context / "rootfs/usr/local/sbin/hil-lab-init").write_text("#!/bin/sh\necho boot twice\n")
    assert images.hub_tag(BASE, hub_context) != before


def test_adding_a_file_changes_the_hub_tag(hub_context: Path) -> None:
    before = images.hub_tag(BASE, hub_context)
    (hub_context / "rootfs/etc").mkdir()
    (hub_context / "rootfs/etc/issue").write_text("Debian\n")
    assert images.hub_tag(BASE, hub_context) != before


def test_executable_bit_is_an_input(hub_context: Path) -> None:
    before = images.hub_tag(BASE, hub_context)
    (hub_context / "rootfs/usr/local/sbin/hil-lab-init").chmod(0o644)
    assert images.hub_tag(BASE, hub_context) != before


def test_new_base_changes_the_hub_tag(hub_context: Path) -> None:
    assert images.hub_tag(BASE, hub_context) != images.hub_tag("hil-lab/base:fedcba9876543210", hub_context)


def test_python_caches_are_not_inputs(hub_context: Path) -> None:
    before = images.hub_tag(BASE, hub_context)
    cache = hub_context / "rootfs/opt/__pycache__"
    cache.mkdir(parents=True)
    (cache / "x.cpython-311.pyc").write_bytes(b"\0")
    (hub_context / "rootfs/usr/local/sbin/notes.swp").write_bytes(b"\0")
    assert images.hub_tag(BASE, hub_context) == before


def test_moving_content_between_files_changes_the_digest(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("12")
    (a / "y").write_text("3")
    (b / "x").write_text("1")
    (b / "y").write_text("23")
    assert images.tree_digest(a) != images.tree_digest(b)


def test_base_tag_depends_on_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    before = images.base_tag()
    monkeypatch.setattr(images, "BASE_PACKAGES", (*images.BASE_PACKAGES, "strace"))
    assert images.base_tag() != before


def test_planned_images_are_stable_and_complete() -> None:
    first, second = images.planned_images(), images.planned_images()
    assert first == second
    assert set(first.components) == {"web", "app", "db", "agent", "ml-infer"}
    assert first.hub.startswith("hil-lab/hub:") and first.registry.startswith("hil-lab/registry:")


def test_missing_debootstrap_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", os.devnull)
    with pytest.raises(images.DebootstrapMissing, match="apt-get install -y debootstrap"):
        images._build_base(None, "hil-lab/base:x", images._Builder(None, None))


def test_unreachable_mirror_is_a_user_error() -> None:
    # Port 9 on loopback (discard) is closed here: refused at once, no traffic leaves the host.
    with pytest.raises(images.MirrorUnreachable, match=images.MIRROR_ENV):
        images._check_mirror("http://127.0.0.1:9/debian")


def test_reproducible_layer_depends_on_contents_only(tmp_path: Path) -> None:
    """Two layers with the same files but other times, owners and order normalize to one byte string."""
    import io
    import tarfile

    from hil_lab.oci import _normalize

    def layer(mtime: int, uid: int, order: list[str]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in order:
                data = name.encode() * 3
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.uid, info.uname, info.mode = len(data), mtime, uid, "u", 0o644
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def normalized(raw: bytes) -> bytes:
        out = io.BytesIO()
        _normalize(io.BytesIO(raw), out)
        return out.getvalue()

    a = normalized(layer(1_700_000_000, 1000, ["opt/b", "opt/a"]))
    b = normalized(layer(1_800_000_000, 0, ["opt/a", "opt/b"]))
    assert a == b
    assert normalized(layer(0, 0, ["opt/a", "opt/c"])) != a
