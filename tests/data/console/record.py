"""Record raw console transcripts from a real getty (how tests/data/console/*.raw were made).

Run as root with a throwaway user, then remove the user::

    useradd -m -s /bin/bash hilrec && echo 'hilrec:PASSWORD' | chpasswd
    socat TCP-LISTEN:47311,bind=127.0.0.1,reuseaddr,fork \\
        EXEC:"/sbin/agetty --noclear -L 115200 - vt100",pty,setsid,ctty,stderr,sane &
    HIL_REC_PASSWORD=PASSWORD python tests/data/console/record.py 127.0.0.1 47311 hilrec
    kill %1; userdel -r hilrec

Kernel messages are injected by writing to the session's tty from outside, as the
kernel's console driver would (including in the middle of a line of output).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from hil.drivers.console import framed_command

HERE = Path(__file__).parent
KERNEL = [
    b"[  123.456789] usb 1-1: new high-speed USB device number 2 using xhci_hcd\r\n",
    b"[  123.601234] usb 1-1: New USB device found, idVendor=0424, idProduct=ec00\r\n",
    b"[  124.000017] EXT4-fs (mmcblk0p2): re-mounted. Opts: (null)\r\n",
]


class Recorder:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.buf = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while data := self.sock.recv(4096):
            with self.lock:
                self.buf += data

    def take(self, settle: float) -> bytes:
        time.sleep(settle)
        with self.lock:
            out, self.buf = bytes(self.buf), bytearray()
        return out

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())


def tty_of(user: str) -> str:
    out = subprocess.run(["ps", "-o", "tty=", "-u", user], capture_output=True, text=True,
                         check=True).stdout.split()
    return "/dev/" + out[0]


def save(name: str, data: bytes) -> None:
    (HERE / f"{name}.raw").write_bytes(data)
    print(f"{name}: {len(data)} bytes")


def main(host: str, port: int, user: str) -> None:
    rec = Recorder(host, port)
    rec.send("\r")
    save("login_prompt", rec.take(1.5))
    rec.send(user + "\r")
    save("password_prompt", rec.take(1.0))
    rec.send("wrong-password\r")
    save("login_incorrect", rec.take(5.0))
    rec.send(user + "\r")
    rec.take(1.0)
    rec.send(os.environ["HIL_REC_PASSWORD"] + "\r")
    save("shell", rec.take(1.5))
    rec.send("\r")
    save("shell_newline", rec.take(0.5))

    cases = {
        "command_output": (["ls", "-l", "/etc/hostname", "/etc/os-release"], "0123456789ab"),
        "command_failed": (["sh", "-c", "echo to-stderr >&2; printf no-newline; exit 3"],
                           "a1b2c3d4e5f6"),
        "command_empty": (["true"], "00000000cafe"),
    }
    for name, (argv, nonce) in cases.items():
        rec.send(framed_command(argv, nonce) + "\r")
        save(name, rec.take(1.0))

    # Kernel messages while a command prints, one of them mid-line.
    argv = ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.4; done; printf 'half '; "
            "sleep 0.6; echo line-end; sleep 0.4; echo done"]
    rec.send(framed_command(argv, "feedc0ffee42") + "\r")
    tty = tty_of(user)
    time.sleep(0.2)
    with open(tty, "wb", buffering=0) as t:
        t.write(KERNEL[0])
        time.sleep(0.4)
        t.write(KERNEL[1])
        time.sleep(0.7)  # now inside "half " ... "line-end"
        t.write(KERNEL[2])
    save("command_kernel_noise", rec.take(2.5))

    rec.send("exit\r")
    rec.take(1.0)

    # A kernel message arriving while a fresh getty shows its login prompt.
    rec = Recorder(host, port)
    rec.send("\r")
    time.sleep(1.0)
    getty_tty = subprocess.run(["ps", "-o", "tty=", "-C", "agetty"], capture_output=True,
                               text=True, check=True).stdout.split()[0]
    with open("/dev/" + getty_tty, "wb", buffering=0) as t:
        t.write(KERNEL[0])
    save("login_prompt_kernel_noise", rec.take(0.5))

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
