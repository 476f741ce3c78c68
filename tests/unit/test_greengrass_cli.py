"""`hil deploy` / `hil rollback`: exit codes and flow, on the scripted hub of the deployment tests."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from fake_clock import FakeClock
from test_greengrass_deployment import CONTAINER, FakeHub, Script
from typer.testing import CliRunner

from hil.commands import deploy as deploy_cmd

CANDIDATES = Path(__file__).resolve().parents[2] / "candidates"
# any valid ed25519 public key: the command must get as far as connecting
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd1bT0pNn2lJxUBj6kU4H6W1PtkBmv6R2yTkT9m1ZbF"


@pytest.fixture
def app() -> typer.Typer:
    a = typer.Typer()
    deploy_cmd.register(a)
    return a


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    port = free_port()  # nothing listens there: connecting is refused at once
    (tmp_path / "key").write_text("not used\n")
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {PUBKEY}\n")
    inv = tmp_path / "devices.yaml"
    inv.write_text(
        f"devices:\n  hub-t:\n    ssh: {{host: 127.0.0.1, port: {port}, user: hil, key_file: key, "
        "known_hosts: known_hosts}\ntimeouts: {ssh_connect: 2, settle: 0.3, deployment: 5}\n")
    return inv


def invoke(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_bad_candidate_exits_2_naming_the_file(app: typer.Typer, inventory: Path, tmp_path: Path) -> None:
    (tmp_path / "cand/recipes").mkdir(parents=True)
    (tmp_path / "cand/recipes/x.yaml").write_text("ComponentName: [\n")
    r = invoke(app, "deploy", "hub-t", "--candidate", str(tmp_path / "cand"), "--devices", str(inventory))
    assert r.exit_code == 2
    assert "x.yaml" in r.output and "not valid YAML" in r.output


def test_unknown_hub_exits_2(app: typer.Typer, inventory: Path) -> None:
    r = invoke(app, "deploy", "hub-zz", "--candidate", str(CANDIDATES / "good"), "--devices", str(inventory))
    assert r.exit_code == 2 and "unknown device hub-zz" in r.output


def test_unreachable_hub_exits_3(app: typer.Typer, inventory: Path) -> None:
    r = invoke(app, "deploy", "hub-t", "--candidate", str(CANDIDATES / "good"), "--devices", str(inventory))
    assert r.exit_code == 3, r.output
    r = invoke(app, "rollback", "hub-t", "--devices", str(inventory))
    assert r.exit_code == 3, r.output


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    hub = FakeHub(FakeClock(min_step=0.001))

    @contextlib.contextmanager
    def connect(inv: object, device: object) -> Iterator[tuple[FakeHub, FakeHub, Callable[[], None]]]:
        yield hub, hub, lambda: None  # no lease, no fence: a unit test of the command's flow

    monkeypatch.setattr(deploy_cmd, "_connect", connect)
    return hub


def test_deploy_then_restore_exits_0(app: typer.Typer, inventory: Path, fake_hub: FakeHub,
                                     tmp_path: Path) -> None:
    r = invoke(app, "deploy", "hub-t", "--candidate", str(CANDIDATES / "good"), "--devices", str(inventory),
               "--evidence", str(tmp_path / "ev"))
    assert r.exit_code == 0, r.output
    assert "restored the previous component set" in r.output
    assert CONTAINER not in fake_hub.components


def test_failed_deployment_exits_1_and_writes_redacted_logs(app: typer.Typer, inventory: Path,
                                                            fake_hub: FakeHub, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's logs are untrusted and may quote secrets: a registered 3-character secret and an
    unregistered token are masked in every file `hil deploy` writes and in what it prints."""
    from hil.inventory import SecretRef

    monkeypatch.setenv("HIL_TEST_PIN", "qXj")
    SecretRef.parse("${HIL_TEST_PIN}").resolve()  # how the inventory registers it
    fake_hub.nucleus_log = ("2024-01-01T00:00:00.000Z [INFO] (x) com.hbs.hub.Broken: stdout. pdu pin qXj, "
                            "api_key=sk-live-0123456789abcdef. {}\n")
    fake_hub.scripts.append(Script(statuses=["FAILED"], states={"com.hbs.hub.Broken": ["BROKEN"]},
                                   failure=["Deployment Failure Cause: Service com.hbs.hub.Broken in broken "
                                            "state after deployment (pin qXj)"]))
    r = invoke(app, "deploy", "hub-t", "--candidate", str(CANDIDATES / "bad"), "--devices", str(inventory),
               "--evidence", str(tmp_path / "ev"))
    assert r.exit_code == 1, r.output
    assert "broken state" in r.output
    written = {p.name: p.read_text() for p in (tmp_path / "ev/hub-fake").rglob("*") if p.is_file()}
    assert set(written) >= {"greengrass.log.txt", "com.hbs.hub.Broken.log.txt", "docker_ps_-a.txt",
                            "result.json"}
    for text in [*written.values(), r.output]:
        assert "qXj" not in text and "sk-live-0123456789abcdef" not in text
    assert "***REDACTED***" in written["greengrass.log.txt"]  # the evidence is there, masked
    assert json.loads(written["result.json"])["outcome"] == "product"
    assert "com.hbs.hub.Broken" not in fake_hub.components  # torn down all the same


def test_keep_deployed_then_rollback(app: typer.Typer, inventory: Path, fake_hub: FakeHub) -> None:
    r = invoke(app, "deploy", "hub-t", "--candidate", str(CANDIDATES / "good"), "--devices", str(inventory),
               "--keep-deployed")
    assert r.exit_code == 0, r.output
    assert CONTAINER in fake_hub.components and "hil rollback hub-t" in r.output
    # a second deploy is refused until the rollback
    r = invoke(app, "deploy", "hub-t", "--candidate", str(CANDIDATES / "good"), "--devices", str(inventory))
    assert r.exit_code == 2 and "rollback" in r.output
    r = invoke(app, "rollback", "hub-t", "--devices", str(inventory))
    assert r.exit_code == 0, r.output
    assert CONTAINER not in fake_hub.components
    r = invoke(app, "rollback", "hub-t", "--devices", str(inventory))
    assert r.exit_code == 0 and "nothing to roll back" in r.output


def _hostile(cand: Path, kind: str, tmp_path: Path) -> tuple[str, str]:
    """Make ``cand`` hostile; returns (the file the error must name, the words it must say)."""
    recipe = cand / "recipes/com.hbs.hub.Container-1.0.0.yaml"
    if kind == "symlink":
        (tmp_path / "runner.key").write_text("secret\n")
        link = cand / "artifacts/com.hbs.hub.Container/1.0.0/key"
        link.symlink_to(tmp_path / "runner.key")
        return str(link), "outside the candidate folder"
    if kind == "dotdot":
        text = recipe.read_text().replace("ComponentName: com.hbs.hub.Container", "ComponentName: '..'")
        recipe.write_text(text)
        return str(recipe), "field ComponentName"
    if kind == "tampered":  # OWASP I4: one changed byte, the recipe's digest no longer matches
        compose = cand / "artifacts/com.hbs.hub.Container/1.0.0/docker-compose.yaml"
        data = bytearray(compose.read_bytes())
        data[-2] ^= 0x20
        compose.write_bytes(bytes(data))
        return str(recipe), "field Manifests[0].Artifacts[0].Digest: does not match"
    (cand / "candidate.yaml").write_text("images: ['--privileged']\n")
    return str(cand / "candidate.yaml"), "field images[0]"


@pytest.mark.parametrize("kind", ["symlink", "dotdot", "image", "tampered"])
def test_hostile_candidate_exits_2_before_any_hub_is_touched(app: typer.Typer, tmp_path: Path,
                                                             kind: str) -> None:
    import shutil

    cand = tmp_path / "cand"
    shutil.copytree(CANDIDATES / "good", cand)
    file, words = _hostile(cand, kind, tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        (tmp_path / "key").write_text("not used\n")
        (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {PUBKEY}\n")
        inv = tmp_path / "devices.yaml"
        inv.write_text(f"devices:\n  hub-t:\n    ssh: {{host: 127.0.0.1, port: {port}, user: hil, "
                       "key_file: key, known_hosts: known_hosts}\n")
        r = invoke(app, "deploy", "hub-t", "--candidate", str(cand), "--devices", str(inv))
        assert r.exit_code == 2, r.output
        text = " ".join(r.output.split())
        assert f"file {file}" in text and words in text, text
        assert "Traceback" not in r.output
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected: validation came first
