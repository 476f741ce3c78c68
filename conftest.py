"""Root conftest: loads the harness's pytest plugins, nothing else."""

pytest_plugins = [
    "hil_pytest.run",
    "hil_pytest.devices",
    "hil_pytest.outcomes",
    "hil_pytest.gate",
    "hil_pytest.security",
    "hil_pytest.software",
    "hil_pytest.run_meta", "hil_pytest.deploy", "hil_pytest.latency",
    "hil_pytest.cancel",
]
