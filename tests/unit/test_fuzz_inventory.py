"""Fuzz the inventory loader: whatever devices.yaml holds, only InventoryError comes out.

Three kinds of input: raw bytes, YAML-ish text built from YAML's own syntax pieces,
and well-formed YAML whose structure is a valid inventory with values and keys
swapped for wrong ones (the mistakes people make by hand).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.errors import HilError, InventoryError
from hil.inventory import load_inventory

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

VALID: dict[str, Any] = {
    "lab": "fuzz-lab",
    "defaults": {
        "model": "virtual-pi4",
        "ssh": {"port": 22, "user": "hil", "key_file": "keys/id", "known_hosts": "known_hosts"},
        "console": {"baud": 115200, "login": {"user": "hil", "password": "${file:secrets/pw}"}},
        "expect": {"tcp_ports": [22, 8883], "udp_ports": [], "os_id": "debian",
                   "private_key_allowlist": ["/etc/ssh/ssh_host_*_key"],
                   "broker": {"port": 8883, "ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "c.key"}},
    },
    "devices": {
        "hub-01": {"ssh": {"host": "172.28.77.11"}, "console": {"url": "socket://127.0.0.1:7001"},
                   "power": {"driver": "tasmota", "url": "http://127.0.0.1:8080", "outlet": 1},
                   "tags": ["virtual"]},
        "hub-02": {"ssh": {"host": "172.28.77.12"}, "console": {"url": "/dev/ttyUSB0"}},
    },
    "timeouts": {"ssh_connect": 5, "lease": 30},
    "lease": {"store": None, "directory": "leases", "ttl": 60},
    "selection": {"exclude_tags": ["vulnerable"]},
}

KEYS = ["lab", "defaults", "devices", "timeouts", "lease", "selection", "ssh", "host", "port", "user",
        "key_file", "known_hosts", "console", "url", "baud", "login", "password", "power", "driver",
        "expect", "tcp_ports", "udp_ports", "broker", "ca_file", "tags", "model", "name", "store",
        "directory", "ttl", "exclude_tags", "hub-01", "", "Hub 01", "../x"]
def _hashable(v: object) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), st.sampled_from(KEYS),
    st.sampled_from(["${HIL_NOPE}", "${file:../../etc/shadow}", "${}", "~/x", "\x00", "/dev/ttyUSB0",
                     "postgresql://u:p@h/db", "nosuch://x", "rfc2217://h:1", "loop://"]),
    st.dates(), st.datetimes(), st.binary(max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), scalars.filter(_hashable)),
                                            inner, max_size=4)),
    max_leaves=12,
)


def _check(path: Path) -> None:
    try:
        load_inventory(path)
    except HilError as exc:
        assert isinstance(exc, InventoryError), f"{type(exc).__name__}: {exc}"
        assert str(exc).startswith(f"file {path}"), str(exc)  # names the file


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-inventory")


def test_valid_base_loads(fuzz_dir: Path) -> None:
    path = fuzz_dir / "devices.yaml"
    path.write_text(yaml.safe_dump(VALID))
    inv = load_inventory(path)
    assert list(inv.devices) == ["hub-01", "hub-02"]


@FUZZ
@given(raw=st.binary(max_size=400))
def test_arbitrary_bytes(fuzz_dir: Path, raw: bytes) -> None:
    path = fuzz_dir / "devices.yaml"
    path.write_bytes(raw)
    _check(path)


YAML_BITS = ["devices:", "\n", "  ", "- ", ": ", "hub-01", "ssh", "host", "{", "}", "[", "]", "&a ", "*a",
             "!!python/object:os.system ", "!!binary ", "? ", "|\n", ">-\n", "'", '"', "#", "---\n", "...\n",
             "%YAML 1.1\n", "<<: *a\n", "!!int ", "\t", "0x1f", "1e400", ".nan", "~", "2020-01-25", "\ufeff"]


@FUZZ
@given(parts=st.lists(st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=8)), max_size=40))
def test_yaml_ish_text(fuzz_dir: Path, parts: list[str]) -> None:
    path = fuzz_dir / "devices.yaml"
    path.write_text("".join(parts), encoding="utf-8", errors="surrogatepass")
    _check(path)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = _paths(VALID)[1:]


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


def _dump(doc: Any) -> str:
    # yaml.dump (not safe_dump) so dates, bytes and odd keys survive as YAML tags where YAML has them
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except yaml.representer.RepresenterError:
        return yaml.dump(doc, allow_unicode=True)


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(ALL_PATHS), values), min_size=1, max_size=4),
       extra=st.one_of(st.none(), st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(KEYS), values)))
def test_structured_but_wrong(fuzz_dir: Path, edits: list[tuple[tuple[Any, ...], Any]],
                              extra: tuple[tuple[Any, ...], str, Any] | None) -> None:
    doc = copy.deepcopy(VALID)
    for where, value in edits:
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier edit replaced a parent
            _set(doc, where, value)
    if extra is not None:
        parent: Any = doc
        try:
            for p in extra[0][:-1]:
                parent = parent[p]
            if isinstance(parent, dict):
                parent[extra[1]] = extra[2]
        except (KeyError, IndexError, TypeError):
            pass
    path = fuzz_dir / "devices.yaml"
    try:
        path.write_text(_dump(doc), encoding="utf-8", errors="surrogatepass")
    except yaml.YAMLError:
        return
    _check(path)


@pytest.mark.parametrize("text", [
    "[" * 5000,                                     # nesting deeper than Python's recursion limit
    "devices: " + "{a: " * 3000 + "}" * 3000,
    "devices:\n  hub-01: !!python/object/apply:os.system [true]\n",
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "defaults: {expect: {tcp_ports: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}}\n"
    "devices: {hub-01: {ssh: {host: h, user: u, key_file: k, known_hosts: kh}}}\n",
    "devices: {hub-01: {ssh: {host: h, user: u, key_file: \"\\0\", known_hosts: kh}}}\n",
    f"devices: {{hub-01: {{ssh: {{host: h, port: {2**80}, user: u, key_file: k, known_hosts: kh}}}}}}\n",
    "devices: {hub-01: {ssh: {host: h, user: u, key_file: k, known_hosts: kh}, expect: {tcp_ports: .nan}}}",
    f"lab: {dt.date(2020, 1, 1)}\ndevices: {{? [a, b]: x}}\n",
])
def test_known_nasty_documents(fuzz_dir: Path, text: str) -> None:
    path = fuzz_dir / "nasty.yaml"
    path.write_text(text)
    _check(path)
