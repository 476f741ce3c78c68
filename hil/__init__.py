"""HIL harness: drive Raspberry Pi edge hubs over SSH, serial console and PDU."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hil-harness")  # one source: pyproject.toml's [project] version
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
