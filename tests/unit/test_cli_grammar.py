"""One CLI grammar: every `hil` command that reads the inventory says `--devices/-d FILE`
(env HIL_DEVICES), and an option name means the same placeholder everywhere."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from hil import cli

# typer vendors its own click: its classes are matched by what they are, not imported
Command = Any

INVENTORY_READERS = {"devices", "devices check", "deploy", "rollback", "gate", "lease list",
                     "lease release"}
PLACEHOLDERS = {"FILE", "DIR", "HUB", "URL", "ID", "N", "MS", "TEXT", "ACTION", "FAULT"}


def _is_option(p: Any) -> bool:
    return bool(p.param_type_name == "option")


def _commands() -> Iterator[tuple[str, Command]]:
    cli._register_subcommands()
    root = typer.main.get_command(cli.app)

    def walk(cmd: Command, path: str) -> Iterator[tuple[str, Command]]:
        if path:
            yield path, cmd
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, f"{path} {name}".strip())
    yield from walk(root, "")


COMMANDS = dict(_commands())


def test_every_inventory_reader_takes_devices_d_file() -> None:
    readers = set()
    for path, cmd in COMMANDS.items():
        for p in cmd.params:
            if _is_option(p) and "--devices" in p.opts:
                readers.add(path)
                assert p.opts == ["--devices", "-d"], path
                assert p.envvar == "HIL_DEVICES", path
                assert p.metavar == "FILE", path
    assert readers == INVENTORY_READERS


def test_no_other_name_for_the_inventory() -> None:
    for path, cmd in COMMANDS.items():
        for p in cmd.params:
            names = getattr(p, "opts", [])
            assert not {"--inventory", "--devices-file", "--rack"} & set(names), path


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_placeholders_come_from_one_list(path: str) -> None:
    for p in COMMANDS[path].params:
        if _is_option(p) and p.is_flag:
            continue
        if p.name == "version" or p.expose_value is False:
            continue
        assert p.metavar in PLACEHOLDERS, f"{path} {p.name}: placeholder {p.metavar!r}"


def test_an_option_name_means_one_placeholder_everywhere() -> None:
    by_name: dict[str, set[str | None]] = defaultdict(set)
    for cmd in COMMANDS.values():
        for p in cmd.params:
            if _is_option(p) and not p.is_flag:
                by_name[p.opts[0]].add(p.metavar)
    assert {k: v for k, v in by_name.items() if len(v) > 1} == {}


def test_hub_arguments_are_called_hub() -> None:
    for path, cmd in COMMANDS.items():
        for p in cmd.params:
            if p.param_type_name == "argument" and p.name in {"hub", "device"}:
                assert p.metavar == "HUB", path
