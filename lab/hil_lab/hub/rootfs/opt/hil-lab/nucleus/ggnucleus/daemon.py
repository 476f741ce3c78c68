"""The nucleus process: component services, the deployment queue and the CLI IPC server."""

from __future__ import annotations

import fcntl
import hmac
import itertools
import json
import os
import pwd
import secrets
import signal
import socket
import socketserver
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import NUCLEUS_VERSION
from .deployment import DeploymentRequest, DeploymentService
from .ipc import info_dir, socket_path
from .kernel import BUILTIN_NAMES, Kernel

KERNEL_LOGGER = "com.aws.greengrass.lifecyclemanager.Kernel"
MODEL = "software.amazon.awssdk.aws.greengrass.model"
DEFAULT_POSIX_USER = "ggc_user:ggc_group"


class ServiceError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type, self.message = error_type, message


class Nucleus:
    def __init__(self, root: Path, default_user: str) -> None:
        self.root = root
        thing = os.environ.get("AWS_IOT_THING_NAME") or socket.gethostname()
        self.kernel = Kernel(root, thing, default_user)
        self.deployments = DeploymentService(self.kernel)
        self.token = secrets.token_hex(32)

    def start(self) -> None:
        self.kernel.logs.main.write("INFO", KERNEL_LOGGER, "system-start", "Launching Nucleus",
                                    {"version": NUCLEUS_VERSION, "rootPath": str(self.root)}, thread="main")
        self.kernel.start()
        self.deployments.load()
        self.deployments.start()
        self.kernel.logs.main.write("INFO", KERNEL_LOGGER, "", "Launched Nucleus successfully", thread="main")

    # ---- operations -----------------------------------------------------------------------------

    def handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "create_deployment":
            try:
                return {"deploymentId": self.deployments.submit(DeploymentRequest(**args))}
            except (ValueError, OSError) as exc:
                raise ServiceError(f"{MODEL}.InvalidArgumentsError", str(exc)) from exc
        if op == "get_deployment":
            dep_id = str(args.get("deploymentId", ""))
            rec = self.deployments.get(dep_id)
            if rec is None:
                raise ServiceError(f"{MODEL}.ResourceNotFoundError", "Cannot find deployment")
            return _public(asdict(rec))
        if op == "list_deployments":
            return [_public(asdict(r)) for r in self.deployments.all()]
        if op == "list_components":
            return self.kernel.component_list()
        if op == "get_component":
            return self._component(str(args.get("componentName", ""))).snapshot()
        if op in ("restart_component", "stop_component"):
            svc = self._component(str(args.get("componentName", "")))
            if svc.name in BUILTIN_NAMES:
                return {"status": "FAILED", "message": f"Component {svc.name} is a built-in service"}
            svc.request("restart" if op == "restart_component" else "stop")
            return {"status": "SUCCEEDED"}
        raise ServiceError(f"{MODEL}.UnsupportedOperationException", f"Unknown operation {op}")

    def _component(self, name: str) -> Any:
        with self.kernel.lock:
            svc = self.kernel.services.get(name)
        if svc is None:
            raise ServiceError(f"{MODEL}.ResourceNotFoundError", f"Component with name {name} not found in Greengrass")
        return svc


def _public(rec: dict[str, Any]) -> dict[str, Any]:
    rec.pop("request", None)
    return rec


_ipc_threads = itertools.count(1)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        threading.current_thread().name = f"pool-3-thread-{next(_ipc_threads)}"
        line = self.rfile.readline(1 << 20)
        try:
            req = json.loads(line)
            if not hmac.compare_digest(str(req.get("token", "")), self.server.nucleus.token):
                raise ServiceError(f"{MODEL}.UnauthorizedError", "Authentication failed: invalid CLI token")
            result = self.server.nucleus.handle(str(req.get("op")), dict(req.get("args") or {}))
            response: dict[str, Any] = {"ok": True, "result": result}
        except ServiceError as exc:
            response = {"ok": False, "errorType": exc.error_type, "message": exc.message}
        except (ValueError, TypeError, AttributeError) as exc:
            response = {"ok": False, "errorType": f"{MODEL}.InvalidArgumentsError", "message": str(exc)}
        self.wfile.write((json.dumps(response) + "\n").encode("utf-8"))


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    nucleus: Nucleus


def serve_ipc(nucleus: Nucleus) -> _Server:
    root = nucleus.root
    path = socket_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    path.unlink(missing_ok=True)
    old_umask = os.umask(0o177)
    try:
        server = _Server(str(path), _Handler)
    finally:
        os.umask(old_umask)
    path.chmod(0o600)
    server.nucleus = nucleus
    # Token files: the nucleus's own user (root on a hub) is the only authorized client.
    info = info_dir(root)
    info.mkdir(parents=True, exist_ok=True)
    info.chmod(0o755)
    for stale in info.iterdir():
        stale.unlink()
    token_file = info / f"user-{os.geteuid()}"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"cli_auth_token": nucleus.token, "socket_path": str(path)}, fh)
    threading.Thread(target=server.serve_forever, name="ipc-server", daemon=True).start()
    return server


def ensure_default_user(posix_user: str, log: Any) -> None:
    """Create ggc_user/ggc_group on first start, as the real installer does (root only)."""
    user, _, group = posix_user.partition(":")
    if os.geteuid() != 0 or user != "ggc_user":
        return
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    group = group or "ggc_group"
    subprocess.run(["groupadd", "--system", "-f", group], check=False, capture_output=True)
    result = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                             "--shell", "/usr/sbin/nologin", "-g", group, user], check=False, capture_output=True)
    log.write("INFO", KERNEL_LOGGER, "create-default-user", "",
              {"user": user, "group": group, "exitCode": result.returncode}, thread="main")


def install_cli_wrapper(root: Path) -> None:
    """Give ROOT/bin a greengrass-cli when the root is not the image's /greengrass/v2 (tests)."""
    target = root / "bin" / "greengrass-cli"
    if target.exists():
        return
    here = Path(__file__).resolve().parents[4] / "greengrass" / "v2" / "bin" / "greengrass-cli"
    if not here.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f'#!/bin/sh\nGGC_ROOT_PATH="${{GGC_ROOT_PATH:-{root}}}" exec "{here}" "$@"\n')
    target.chmod(0o755)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else os.environ.get("GGC_ROOT_PATH") or "/greengrass/v2").resolve()
    root.mkdir(parents=True, exist_ok=True)
    lock = (root / ".nucleus.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"nucleus already running for {root}", file=sys.stderr)
        return 0
    lock.write(str(os.getpid()))
    lock.flush()
    posix_user = os.environ.get("HIL_NUCLEUS_POSIX_USER") or DEFAULT_POSIX_USER
    nucleus = Nucleus(root, posix_user)
    ensure_default_user(posix_user, nucleus.kernel.logs.main)
    install_cli_wrapper(root)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    nucleus.start()
    server = serve_ipc(nucleus)
    stop.wait()
    nucleus.kernel.logs.main.write("INFO", KERNEL_LOGGER, "system-shutdown", "Nucleus shutting down",
                                   thread="Thread-0")
    server.shutdown()
    nucleus.kernel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
