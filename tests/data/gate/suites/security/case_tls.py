import os

import pytest

SCENARIO = os.environ.get("GATE_SCENARIO", "good")
PLANTED_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAPLANTED\n"
               "-----END OPENSSH PRIVATE KEY-----")


@pytest.mark.security
@pytest.mark.parametrize("device", ["hub-01", "hub-02"])
def test_no_private_keys_exposed(device: str) -> None:
    if SCENARIO == "secret" and device == "hub-01":
        raise AssertionError(f"world-readable key /home/pi/id_ed25519 on {device}:\n{PLANTED_KEY}\n"
                             "console password=planted-console-pw-42")


@pytest.mark.security
@pytest.mark.parametrize("device", ["hub-01", "hub-02"])
def test_broker_refuses_foreign_client(device: str) -> None:
    if SCENARIO == "gap" and device == "hub-02":
        pytest.skip(f"{device}: devices.yaml has no expect.broker")
