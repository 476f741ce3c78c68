"""Root conftest: loads the harness's pytest plugins, nothing else."""

pytest_plugins = [
    "fixtures.run",
    "fixtures.devices",
    "fixtures.outcomes",
    "fixtures.gate",
    "fixtures.security",
    "fixtures.run_meta", "fixtures.deploy", "fixtures.latency",
]
