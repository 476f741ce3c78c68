"""The whole security suite on a second kind of hub: plain Debian, not built by the lab's
hub image (lab/hil_lab/images/plain-hub; `hil lab up --with-plain`).

One real child run (`pytest suites/security --device hub-plain`, JUnit read back). The
hub declares `services: [ssh, mqtt_broker]`, runs sshd on 2222 and mosquitto with mutual
TLS on 8884 configured with Debian drop-ins, and has no console, engine or nucleus. So:
- every check about the console, Docker or Greengrass is skipped as NOT APPLICABLE,
  naming the missing declaration - no infrastructure skip, no error;
- each deliberate defect (lab/DEFECTS.md P1-P6) fails the check that targets it, with
  the defect named in the message;
- every other check passes: no false product failure on a hub the lab did not build
  (other port, other user, other certificate paths, Match blocks, no foreign
  certificate in the inventory - the harness makes a throwaway one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest
from security_runs import Outcome, finish_security_run, start_security_run

from hil.inventory import Inventory, Service
from hil_lab.topology import PLAIN_CONTAINER, PLAIN_NAME, lab_inventory_path

pytestmark = [pytest.mark.lab, pytest.mark.slow]

INVENTORY = lab_inventory_path()
NOT_DECLARED = ("console", "docker", "greengrass")


@dataclass(frozen=True)
class PlainCatch:
    defect: str
    check: str
    evidence: str


CATCHES: tuple[PlainCatch, ...] = (
    PlainCatch("P1", "test_i1_credentials.py::test_sshd_effective_config_hardened",
               "user=ops addr="),
    PlainCatch("P1", "test_i1_credentials.py::test_sshd_effective_config_hardened",
               "passwordauthentication yes"),
    PlainCatch("P1", "test_i1_credentials.py::test_ssh_offers_only_publickey", "ops: password, publickey"),
    PlainCatch("P2", "test_i1_credentials.py::test_ssh_refuses_default_credentials", "ops/ops"),
    PlainCatch("P3", "test_i3_i7_broker.py::test_broker_cipher_suites_within_policy",
               "TLS 1.2 TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256 (CBC mode)"),
    PlainCatch("P4", "test_i9_defaults.py::test_security_files_not_writable_by_others",
               "/etc/sudoers.d/ops-tools 0666 root:root (world-writable)"),
    PlainCatch("P5", "test_i9_defaults.py::test_no_unexpected_setuid_programs",
               "/usr/local/sbin/netdiag 4755 root:root"),
    PlainCatch("P6", "test_i7_keys.py::test_no_stray_private_keys", "/srv/backup/hub-2026-11.tar (text)"),
)


def _plain_hub_runs() -> bool:
    client = docker.from_env(timeout=10)
    try:
        return bool(client.containers.get(PLAIN_CONTAINER).status == "running")
    except docker.errors.NotFound:
        return False


@pytest.fixture(scope="module")
def plain_run(lab_inventory: Inventory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    if not _plain_hub_runs():
        pytest.skip(f"{PLAIN_NAME} is not running: `hil lab up --with-plain` starts it (./hilw test does)")
    if PLAIN_NAME not in lab_inventory.devices:
        pytest.fail(f"{INVENTORY} has no {PLAIN_NAME}: `hil lab up --with-plain` writes it")
    tmp = tmp_path_factory.mktemp("plain")
    proc = start_security_run(Path(INVENTORY), PLAIN_NAME, tmp, None, "candidates/good")
    return finish_security_run(proc, tmp, PLAIN_NAME)


def test_plain_hub_declares_ssh_and_broker_only(lab_inventory: Inventory) -> None:
    assert lab_inventory.devices[PLAIN_NAME].services == {Service.SSH, Service.MQTT_BROKER}


@pytest.mark.parametrize("catch", CATCHES, ids=[f"{c.defect}-{c.check.split('::')[1]}" for c in CATCHES])
def test_defect_of_the_plain_hub_is_flagged(plain_run: dict[str, Outcome], catch: PlainCatch) -> None:
    got = plain_run.get(catch.check)
    assert got is not None, f"{catch.check} did not run on {PLAIN_NAME}"
    assert got.outcome == "failed", f"{catch.defect}: {catch.check} {got.outcome}: {got.message[:400]}"
    assert "[product]" in got.message and catch.evidence in got.message, \
        f"{catch.defect}: {catch.check} failed, but not naming {catch.evidence!r}: {got.message[:600]}"


def test_checks_about_undeclared_services_are_not_applicable(plain_run: dict[str, Outcome]) -> None:
    skipped = {k: o.message for k, o in plain_run.items() if o.outcome == "skipped"}
    wrong = {k: m[:200] for k, m in skipped.items()
             if f"not applicable: {PLAIN_NAME} does not declare service" not in m
             or not any(f"'{s}'" in m for s in NOT_DECLARED)}
    assert not wrong, f"skips that are not 'not applicable' for an undeclared service: {wrong}"
    for service in NOT_DECLARED:  # each kind of check that does not apply was seen skipping
        assert any(f"'{service}'" in m for m in skipped.values()), f"no check about {service} was skipped"


def test_every_other_check_is_judged_and_passes(plain_run: dict[str, Outcome]) -> None:
    """No infrastructure skip, no error, no false product failure on a hub the lab did not build."""
    caught = {c.check for c in CATCHES}
    unexpected = {k: f"{o.outcome}: {o.message[:300]}" for k, o in plain_run.items()
                  if o.outcome not in ("passed", "skipped") and k not in caught}
    assert not unexpected, f"{PLAIN_NAME}: {unexpected}"
    judged = [k for k, o in plain_run.items() if o.outcome != "skipped"]
    assert len(judged) >= 20, f"only {len(judged)} checks judged: {sorted(judged)}"
    # the refusals pass with positive evidence; the foreign one with the harness's own throwaway CA
    for identity in ("none", "expired", "foreign"):
        assert plain_run[f"test_i3_i7_broker.py::test_broker_refuses_client[{identity}]"].outcome == "passed"
