"""greengrass-cli: the command line the harness drives, parsed the way picocli parses it.

Exit codes: 0 on success AND on option parse errors (message + usage on stderr), 2 without any
argument, 1 on runtime errors (stack-trace-like text on stderr).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .ipc import IpcError, call

ROOT_USAGE = """Usage: greengrass-cli [-hV] [--ggcRootPath=<ggcRootPath>] [COMMAND]
Greengrass command line interface

      --ggcRootPath=<ggcRootPath>
                  The root path of the Greengrass installation
  -h, --help      Show this help message and exit.
  -V, --version   Print version information and exit.
Commands:
  help        Show help information for a command.
  component   Retrieve component information and stop or restart components.
  deployment  Create local deployments and retrieve deployment status.
"""

GROUP_USAGE = {
    "deployment": """Usage: greengrass-cli deployment [-h] [COMMAND]
Create local deployments and retrieve deployment status.
  -h, --help   Show this help message and exit.
Commands:
  create  Create local deployment with provided recipes and artifacts.
  status  Retrieve the status of a deployment
  list    Retrieve the status of local deployments
""",
    "component": """Usage: greengrass-cli component [-h] [COMMAND]
Retrieve component information and stop or restart components.
  -h, --help   Show this help message and exit.
Commands:
  details  Retrieve component details.
  list     Prints root level components names, component information and
             runtime parameters.
  restart  Restart components.
  stop     Stop components.
""",
}


@dataclass
class Opt:
    names: tuple[str, ...]
    label: str  # picocli's <paramLabel>
    kind: str = "str"  # str | map | list | enum
    required: bool = False
    choices: tuple[str, ...] = ()

    @property
    def longest(self) -> str:
        return max(self.names, key=len)


@dataclass
class Command:
    group: str
    name: str
    description: str
    options: list[Opt] = field(default_factory=list)

    def usage(self) -> str:
        synopsis = " ".join(
            (f"{o.longest}=<{o.label}>" if o.required else f"[{o.longest}=<{o.label}>]")
            + ("..." if o.kind in ("map", "list") else "") for o in self.options)
        lines = [f"Usage: greengrass-cli {self.group} {self.name} [-h] {synopsis}".rstrip(), self.description]
        lines.append("  -h, --help   Show this help message and exit.")
        for o in self.options:
            lines.append(f"  {', '.join(o.names)}=<{o.label}>")
        return "\n".join(lines) + "\n"


COMMANDS = {
    ("deployment", "create"): Command("deployment", "create", "Create local deployment with provided recipes and artifacts.", [
        Opt(("-a", "--artifactDir"), "artifactDir"),
        Opt(("-c", "--update-config"), "configUpdate"),
        Opt(("-fp", "--failure-handling-policy"), "failureHandlingPolicy", "enum",
            choices=("ROLLBACK", "DO_NOTHING")),
        Opt(("-g", "--groupId"), "groupId"),
        Opt(("-m", "--merge"), "String=String", "map"),
        Opt(("-r", "--recipeDir"), "recipeDir"),
        Opt(("--remove",), "componentsToRemove", "list"),
        Opt(("--runWith",), "String=String", "map"),
    ]),
    ("deployment", "status"): Command("deployment", "status", "Retrieve the status of a deployment", [
        Opt(("-i", "--deploymentId"), "deploymentId", required=True)]),
    ("deployment", "list"): Command("deployment", "list", "Retrieve the status of local deployments"),
    ("component", "list"): Command("component", "list",
                                   "Prints root level components names, component information and runtime parameters."),
    ("component", "details"): Command("component", "details", "Retrieve component details.", [
        Opt(("-n", "--name"), "componentName", required=True)]),
    ("component", "restart"): Command("component", "restart", "Restart components.", [
        Opt(("-n", "--names"), "names", required=True)]),
    ("component", "stop"): Command("component", "stop", "Stop components.", [
        Opt(("-n", "--names"), "names", required=True)]),
}


class ParseError(Exception):
    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message, self.usage = message, usage


class RuntimeFailure(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type, self.message = error_type, message


def _parse_options(cmd: Command, args: list[str]) -> dict[str, Any]:
    by_name = {n: o for o in cmd.options for n in o.names}
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            raise SystemExit(_print_help(cmd.usage()))
        name, eq, attached = arg.partition("=")
        opt = by_name.get(name)
        if opt is None:
            if arg.startswith("-"):
                raise ParseError(f"Unknown option: '{arg}'", cmd.usage())
            raise ParseError(f"Unmatched argument at index {i}: '{arg}'", cmd.usage())
        if eq:
            value = attached
        elif i + 1 < len(args):
            i += 1
            value = args[i]
        else:
            raise ParseError(f"Missing required parameter for option '{opt.longest}' (<{opt.label}>)", cmd.usage())
        key = opt.longest
        if opt.kind == "map":
            k, sep, v = value.partition("=")
            if not sep:
                raise ParseError(f"Value for option '{opt.longest}' (<{opt.label}>) should be in KEY=VALUE format "
                                 f"but was {value}", cmd.usage())
            values.setdefault(key, {})[k] = v
        elif opt.kind == "list":
            values.setdefault(key, []).append(value)
        elif opt.kind == "enum":
            if value not in opt.choices:
                raise ParseError(f"Invalid value for option '{opt.longest}': expected one of "
                                 f"[{', '.join(opt.choices)}] (case-sensitive) but was '{value}'", cmd.usage())
            values[key] = value
        else:
            values[key] = value
        i += 1
    for opt in cmd.options:
        if opt.required and opt.longest not in values:
            raise ParseError(f"Missing required option: '{opt.longest}=<{opt.label}>'", cmd.usage())
    return values


def _print_help(text: str) -> int:
    sys.stdout.write(text)
    return 0


def _created_on(epoch_ms: int) -> str:
    t = _dt.datetime.fromtimestamp(epoch_ms / 1000, tz=_dt.timezone.utc)
    return t.strftime("%d-%m-%Y %H:%M:%S UTC")


def _configuration(conf: Any) -> str:
    return "null" if conf is None else json.dumps(conf, separators=(",", ":"))


def _component_lines(c: dict[str, Any]) -> list[str]:
    return [f"Component Name: {c['componentName']}", f"    Version: {c['version']}", f"    State: {c['state']}",
            f"    Configuration: {_configuration(c['configuration'])}"]


def _update_config(text: str) -> dict[str, Any]:
    path = Path(text)
    try:
        source = path.read_text(encoding="utf-8") if path.is_file() else text
        data = json.loads(source)
    except (OSError, ValueError) as exc:
        raise RuntimeFailure("com.fasterxml.jackson.core.JsonParseException",
                             f"Unable to parse --update-config as a file or JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RuntimeFailure("java.lang.IllegalArgumentException", "--update-config must be a JSON object")
    return data


def _run_with(pairs: dict[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in pairs.items():
        comp, _, attr = key.rpartition(":")
        if not comp:
            raise RuntimeFailure("java.lang.IllegalArgumentException",
                                 f"--runWith expects <component>:posixUser=<user>[:<group>], got {key}={value}")
        out.setdefault(comp, {})[attr] = value
    return out


def _abs(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def run_command(root: Path, cmd: Command, opts: dict[str, Any], out: TextIO) -> None:
    def ipc(op: str, **args: Any) -> Any:
        try:
            return call(root, op, **args)
        except IpcError as exc:
            raise RuntimeFailure(exc.error_type, exc.message) from exc

    key = (cmd.group, cmd.name)
    if key == ("deployment", "create"):
        request = {
            "recipe_dir": _abs(opts.get("--recipeDir")),
            "artifact_dir": _abs(opts.get("--artifactDir")),
            "merge": opts.get("--merge", {}),
            "remove": opts.get("--remove", []),
            "update_config": _update_config(opts["--update-config"]) if "--update-config" in opts else {},
            "run_with": _run_with(opts.get("--runWith", {})),
            "failure_policy": opts.get("--failure-handling-policy", "DO_NOTHING"),
        }
        if opts.get("--groupId"):
            request["group"] = opts["--groupId"]
        result = ipc("create_deployment", **request)
        out.write(f"Local deployment submitted! Deployment Id: {result['deploymentId']}\n")
    elif key == ("deployment", "status"):
        rec = ipc("get_deployment", deploymentId=opts["--deploymentId"])
        lines = [f"{rec['deploymentId']}: {rec['status']}", f"Created on: {_created_on(rec['createdOn'])}"]
        if rec["status"] == "FAILED":
            for label, value in (("Detailed Status", rec.get("detailedStatus")),
                                 ("Deployment Error Stack", ", ".join(rec.get("errorStack") or [])),
                                 ("Deployment Error Types", ", ".join(rec.get("errorTypes") or [])),
                                 ("Deployment Failure Cause", rec.get("failureCause"))):
                if value:
                    lines.append(f"{label}: {value}")
        out.write("\n".join(lines) + "\n")
    elif key == ("deployment", "list"):
        entries = [f"Deployment ID: {r['deploymentId']}\nCreated on: {_created_on(r['createdOn'])}\n"
                   f"Status: {r['status']}\n" for r in ipc("list_deployments")]
        out.write("\n".join(entries))
    elif key == ("component", "list"):
        lines = ["Components currently running in Greengrass:"]
        for c in ipc("list_components"):
            lines.extend(_component_lines(c))
        out.write("\n".join(lines) + "\n")
    elif key == ("component", "details"):
        out.write("\n".join(_component_lines(ipc("get_component", componentName=opts["--name"]))) + "\n")
    else:  # restart / stop: nothing printed even when the request fails
        op = "restart_component" if cmd.name == "restart" else "stop_component"
        for name in [n.strip() for n in opts["--names"].split(",") if n.strip()]:
            ipc(op, componentName=name)


def _stack_trace(error_type: str, message: str, err: TextIO) -> None:
    err.write(f"Exception in thread \"main\" {error_type}: {message}\n"
              "\tat com.aws.greengrass.cli.adapter.impl.NucleusAdapterIpcClientImpl.handleRequest"
              "(NucleusAdapterIpcClientImpl.java:244)\n"
              "\tat com.aws.greengrass.cli.CLI.main(CLI.java:61)\n")


def main(argv: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr,
         env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    if not argv:
        err.write(ROOT_USAGE)
        return 2
    args = list(argv)
    root_opt: str | None = None
    try:
        while args and args[0].startswith("-"):
            arg = args.pop(0)
            if arg in ("-h", "--help"):
                return _print_help(ROOT_USAGE)
            if arg in ("-V", "--version"):
                out.write("Greengrass CLI Version: 2.12.1\n")
                return 0
            name, eq, value = arg.partition("=")
            if name != "--ggcRootPath":
                raise ParseError(f"Unknown option: '{arg}'", ROOT_USAGE)
            if not eq:
                if not args:
                    raise ParseError("Missing required parameter for option '--ggcRootPath' (<ggcRootPath>)",
                                     ROOT_USAGE)
                value = args.pop(0)
            root_opt = value
        if not args:
            raise ParseError("Missing required subcommand", ROOT_USAGE)
        group = args.pop(0)
        if group == "help":
            topic = GROUP_USAGE.get(args[0]) if args else None
            return _print_help(topic or ROOT_USAGE)
        if group not in GROUP_USAGE:
            raise ParseError(f"Unmatched argument at index {len(argv) - len(args) - 1}: '{group}'", ROOT_USAGE)
        if not args or args[0] in ("-h", "--help"):
            if args:
                return _print_help(GROUP_USAGE[group])
            raise ParseError("Missing required subcommand", GROUP_USAGE[group])
        name = args.pop(0)
        cmd = COMMANDS.get((group, name))
        if cmd is None:
            raise ParseError(f"Unmatched argument at index {len(argv) - len(args) - 1}: '{name}'", GROUP_USAGE[group])
        opts = _parse_options(cmd, args)
    except ParseError as exc:
        err.write(exc.message + "\n" + exc.usage)
        return 0  # picocli as the Greengrass CLI uses it: parse errors exit 0
    except SystemExit as done:
        return int(done.code or 0)
    root = Path(root_opt or env.get("GGC_ROOT_PATH") or "/greengrass/v2")
    runner: Callable[[Path, Command, dict[str, Any], TextIO], None] = run_command
    try:
        runner(root, cmd, opts, out)
    except RuntimeFailure as exc:
        _stack_trace(exc.error_type, exc.message, err)
        return 1
    return 0
