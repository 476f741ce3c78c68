"""The lab's state folder: unique host keys per hub, known_hosts from them, secret modes."""

from __future__ import annotations

import stat
from pathlib import Path

import paramiko
import pytest

from hil_lab.state import LabState, ensure_state
from hil_lab.topology import rack

HUBS = rack(2, with_vulnerable=True)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> LabState:
    return ensure_state(tmp_path_factory.mktemp("state"), HUBS)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_host_keys_are_unique_per_hub_and_pinned_in_known_hosts(state: LabState) -> None:
    known = paramiko.HostKeys(str(state.paths.known_hosts))
    seen: set[str] = set()
    for hub in HUBS:
        entry = known.lookup(hub.address)
        assert entry is not None, hub.address
        assert set(entry.keys()) == {"ssh-ed25519", "ssh-rsa"}
        for kind, key in entry.items():
            assert key.get_base64() not in seen, f"{hub.name} shares its {kind} host key"
            seen.add(key.get_base64())
            on_disk = paramiko.PKey.from_path(state.paths.host_key(hub.name, kind.removeprefix("ssh-")))
            assert on_disk.get_base64() == key.get_base64()
    rsa = paramiko.PKey.from_path(state.paths.host_key(HUBS[0].name, "rsa"))
    assert rsa.get_bits() == 3072


def test_secrets_and_private_keys_are_0600(state: LabState) -> None:
    paths = state.paths
    private = [paths.ssh_key, paths.console_password, paths.host_key("hub-01", "ed25519"),
               paths.registry_certs / "registry.key"]
    cfg = paths.hub_config("hub-vuln")
    private += [cfg / "console_password", cfg / "server.key", cfg / "device.key",
                cfg / "ssh" / "ssh_host_rsa_key"]
    for path in private:
        assert _mode(path) == 0o600, path
    assert len(paths.console_password.read_text().strip()) >= 20


def test_hub_config_folder_holds_the_contract_files(state: LabState) -> None:
    cfg = state.paths.hub_config("hub-02")
    names = {p.relative_to(cfg).as_posix() for p in cfg.rglob("*") if p.is_file()}
    assert names == {
        "profile", "authorized_keys", "console_password", "ca.pem", "registry-ca.pem", "registry",
        "server.pem", "server.key", "device.pem", "device.key",
        "ssh/ssh_host_ed25519_key", "ssh/ssh_host_ed25519_key.pub",
        "ssh/ssh_host_rsa_key", "ssh/ssh_host_rsa_key.pub",
    }
    assert (cfg / "profile").read_text().strip() == "hardened"
    assert (state.paths.hub_config("hub-vuln") / "profile").read_text().strip() == "vulnerable"
    assert (cfg / "registry").read_text().strip() == "registry.lab:5000"
    harness_pub = state.paths.ssh_key.with_name("hil_ed25519.pub").read_text().split()[:2]
    assert (cfg / "authorized_keys").read_text().split()[:2] == harness_pub


def test_second_run_keeps_keys_like_a_device_keeps_its_identity(state: LabState) -> None:
    files = [state.paths.ssh_key, state.paths.console_password, state.paths.known_hosts,
             state.paths.host_key("hub-01", "rsa")]
    before = [p.read_bytes() for p in files]
    ensure_state(state.paths.root, HUBS)
    assert [p.read_bytes() for p in files] == before
