"""The CLI <-> nucleus channel: one JSON request line, one JSON response line, over a unix socket.

The socket is root-only (0600) and every request carries the token the nucleus wrote to
ROOT/cli_ipc_info/user-<uid>, as the real Greengrass CLI authenticates.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

IPC_TIMEOUT = 60.0  # seconds, like the real CLI's IPC timeout


def socket_path(root: Path) -> Path:
    return root / "ipc" / "cli.socket"


def info_dir(root: Path) -> Path:
    return root / "cli_ipc_info"


class IpcError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def read_auth(root: Path) -> dict[str, Any]:
    """The token file for this process's effective user, else its effective group."""
    d = info_dir(root)
    tried = []
    for name in (f"user-{os.geteuid()}", f"group-{os.getegid()}"):
        path = d / name
        tried.append(str(path))
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return data
        except (OSError, ValueError):
            continue
    raise IpcError("java.lang.RuntimeException",
                   f"Unable to find the Greengrass CLI IPC auth token; is the nucleus running and is this user "
                   f"authorized? Tried {', '.join(tried)}")


def call(root: Path, op: str, **args: Any) -> Any:
    auth = read_auth(root)
    request = json.dumps({"token": auth.get("cli_auth_token"), "op": op, "args": args}) + "\n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(IPC_TIMEOUT)
    try:
        sock.connect(str(auth.get("socket_path") or socket_path(root)))
        sock.sendall(request.encode("utf-8"))
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    except OSError as exc:
        raise IpcError("software.amazon.awssdk.crt.CrtRuntimeException",
                       f"Failed to connect to the Greengrass nucleus IPC socket: {exc}") from exc
    finally:
        sock.close()
    try:
        response = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError as exc:
        raise IpcError("software.amazon.awssdk.eventstreamrpc.EventStreamClosedException",
                       "The nucleus closed the connection") from exc
    if not response.get("ok"):
        raise IpcError(response.get("errorType", "ServiceError"), response.get("message", "unknown error"))
    return response.get("result")
