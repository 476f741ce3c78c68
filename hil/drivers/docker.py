"""The Docker SDK on a hub's engine, over the harness's own pinned SSH connection.

docker-py's ``ssh://`` support either shells out to ``ssh`` (whatever ~/.ssh/config and
known_hosts say) or opens its own paramiko client that trusts the system host keys.
Neither uses the inventory's pinned known_hosts. Here every HTTP connection of the SDK
is a new channel on the hub's already authenticated ``SshConnection`` transport,
running ``docker system dial-stdio`` (through ``sudo -n``: the harness user is not in
the docker group on a hardened hub), which relays the channel to the engine's socket.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import docker
import paramiko
import urllib3
import urllib3.connection
import urllib3.connectionpool
from docker.transport.basehttpadapter import BaseHTTPAdapter

from hil.drivers.base import sudo_argv
from hil.errors import DeviceUnreachable

API_VERSION = "1.41"
"""Docker 20.10's API; later engines still serve it, so no version probe at construction."""
DIAL_STDIO = ["docker", "system", "dial-stdio"]
BASE_URL = "http+docker://ssh-dial-stdio"
"""A placeholder host: requests picks the adapter mounted for this prefix. It starts with
docker-py's own ``http+docker://ssh`` so that the SDK's raw-stream calls (``get_archive``,
``attach_socket``, logs with ``stream=True``) take the socket of a paramiko channel as it
does for its own SSH transport (``response.raw._fp.fp.channel``)."""

TransportSource = Callable[[], paramiko.Transport]


class _DialStdioConnection(urllib3.connection.HTTPConnection):
    def __init__(self, transport: TransportSource, timeout: float, argv: list[str]) -> None:
        super().__init__("localhost", timeout=timeout)
        self._transport = transport
        self._timeout = timeout
        self._argv = argv

    def connect(self) -> None:
        try:
            chan = self._transport().open_session(timeout=self._timeout)
            chan.settimeout(self._timeout)
            chan.exec_command(shlex.join(self._argv))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise DeviceUnreachable(f"docker over SSH: cannot open a dial-stdio channel: {exc}") from None
        self.sock = chan  # a paramiko Channel is socket-like enough for http.client


class _DialStdioPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, transport: TransportSource, timeout: float, argv: list[str], maxsize: int) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=maxsize)
        self._transport = transport
        self._chan_timeout = timeout
        self._argv = argv

    def _new_conn(self) -> _DialStdioConnection:
        return _DialStdioConnection(self._transport, self._chan_timeout, self._argv)


class DialStdioAdapter(BaseHTTPAdapter):  # type: ignore[misc]
    """requests adapter: every pooled connection is a dial-stdio channel on ``transport()``."""

    def __init__(self, transport: TransportSource, *, timeout: float = 60.0, sudo: bool = True,
                 max_pool_size: int = 4) -> None:
        self._pool = _DialStdioPool(transport, timeout, sudo_argv(DIAL_STDIO) if sudo else list(DIAL_STDIO),
                                    max_pool_size)
        super().__init__()

    def get_connection(self, url: str, proxies: Any = None) -> urllib3.connectionpool.HTTPConnectionPool:
        return self._pool

    def close(self) -> None:
        super().close()
        self._pool.close()


def docker_client(ssh: Any, *, timeout: float = 60.0, sudo: bool = True,
                  version: str = API_VERSION) -> docker.DockerClient:
    """A ``docker.DockerClient`` for the hub behind ``ssh`` (a ``SshConnection``).

    The transport is read at each new channel, so a reconnect of the harness's
    connection (same pinned key) is picked up.
    """
    if not hasattr(ssh, "transport"):
        raise TypeError(f"docker_client needs an SSH connection with a transport, got {type(ssh).__name__}")
    client = docker.DockerClient(base_url="tcp://127.0.0.1:9", version=version, timeout=int(timeout))
    adapter = DialStdioAdapter(lambda: ssh.transport, timeout=timeout, sudo=sudo)
    client.api.mount(BASE_URL, adapter)
    client.api.base_url = BASE_URL
    return client
