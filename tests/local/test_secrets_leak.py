"""Plant secrets, run the real output paths, and search every file written for them.

Secrets: a console password behind ``${file:...}``, a token behind ``${ENV}``, and a
PEM private key that a device "prints". Output paths: a real pytest run with the
harness plugins and ``--alluredir`` (step listener -> Allure steps and attachments,
captured stdout/stderr/log, failure messages), results.jsonl, JUnit XML, a console
capture file (pyserial ``loop://`` echoes what is typed, as a console with echo on
does), and ``hil gate``'s gate.json. The terminal output of both processes counts too.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hil.drivers.console import SerialConsole
from hil.inventory import ConsoleSpec, SecretRef
from hil.redact import MASK

REPO = Path(__file__).resolve().parents[2]


def _pem() -> tuple[str, str]:
    body = base64.b64encode(secrets.token_bytes(180)).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"
    return pem, lines[1]  # a full line from the middle: it appears nowhere else


def short_secret() -> str:
    """Three characters (a PIN-like PDU password) that no word, number, id or key of the harness's
    own output contains (lower-upper-lower from letters outside hex), so every hit is a leak."""
    return secrets.choice("qxzj") + secrets.choice("QXZJ") + secrets.choice("qxzj")


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, str]:
    password = "pw-" + secrets.token_hex(8)
    token = "tok" + secrets.token_hex(12)
    (tmp_path / "console_password").write_text(password + "\n")
    pem, pem_line = _pem()
    (tmp_path / "device.key").write_text(pem)
    return {"password": password, "token": token, "pem_line": pem_line, "short": short_secret()}


TINY_TEST = '''
import logging, sys
from pathlib import Path
from hil.errors import InfrastructureError
from hil.inventory import SecretRef
from hil.steps import step

HERE = Path(__file__).parent
PW = SecretRef.parse("${file:%s}" % (HERE / "console_password")).resolve()
TOKEN = SecretRef.parse("${HIL_FAKE_TOKEN}").resolve()
SHORT = SecretRef.parse("${HIL_SHORT_SECRET}").resolve()
PEM = (HERE / "device.key").read_text()

def test_login_leaks_everything():
    logging.getLogger("hil.test").warning("console password %s, token %s, pin %s", PW, TOKEN, SHORT)
    print("stdout:", PW, TOKEN, PEM, "pin", SHORT)
    print("stderr:", PW, TOKEN, SHORT, file=sys.stderr)
    with step(f"console login {PW} {SHORT}", device="hub-01", password=PW, token=TOKEN, pin=SHORT) as st:
        st.attach("stdout", PEM + "Authorization: Bearer " + TOKEN + " " + PW + " pdu pin " + SHORT)
    assert PW == "", f"login refused for password {PW} token {TOKEN} pin {SHORT}"

def test_device_error_quotes_the_secret():
    with step("deploy", device="hub-01"):
        raise InfrastructureError(f"hub said: bad password {PW} / {TOKEN} / {SHORT}\\n{PEM}")

def test_passes():
    print(PW, SHORT)
'''


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def _capture_console(path: Path, secret_file: Path, planted: dict[str, str], pem: str) -> None:
    password = SecretRef.parse(f"${{file:{secret_file}}}").resolve()
    con = SerialConsole("hub-01", ConsoleSpec(url="loop://"), capture=path)
    con.open()
    try:
        # typed at a prompt that echoes (a password typed into a shell), plus a key cat'ed
        short = SecretRef.parse("${HIL_SHORT_SECRET}").resolve()
        con._write(f"{password}\r\nexport API_TOKEN={planted['token']}\r\npin {short}\r\n{pem}")
        deadline = time.monotonic() + 5
        while planted["pem_line"] not in con.captured():
            assert time.monotonic() < deadline, "loop:// console did not echo"
            time.sleep(0.02)
    finally:
        con.close()


def test_no_output_file_contains_a_planted_secret(tmp_path: Path, planted: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIL_SHORT_SECRET", planted["short"])  # the console capture runs in this process
    (tmp_path / "conftest.py").write_text((REPO / "conftest.py").read_text())
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(TINY_TEST))
    reports = tmp_path / "reports"
    env = {**os.environ, "HIL_FAKE_TOKEN": planted["token"], "HIL_SHORT_SECRET": planted["short"],
           "HIL_REPORTS_DIR": str(reports),
           "HIL_RUN_ID": "leak-run", "PYTHONPATH": str(REPO)}
    run = _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--alluredir",
                str(reports / "allure-results"), "--junitxml", str(reports / "junit.xml"), "test_leaky.py"],
               tmp_path, env)
    assert run.returncode == 1, run.stdout + run.stderr  # two tests fail on purpose

    (reports / "run" / "leak-run" / "console").mkdir(parents=True, exist_ok=True)
    _capture_console(reports / "run" / "leak-run" / "console" / "hub-01.log",
                     tmp_path / "console_password", planted,
                     (tmp_path / "device.key").read_text())

    gate = _run([sys.executable, "-m", "hil.cli", "gate", "--results", str(reports), "--run-id", "leak-run",
                 "--policy", str(REPO / "gate.yaml"), "--out", str(reports / "gate.json"),
                 "--junit", str(reports / "junit.xml")], tmp_path, env)
    assert gate.returncode in (0, 1, 2), gate.stderr
    assert (reports / "gate.json").is_file(), gate.stdout + gate.stderr

    written = [p for p in reports.rglob("*") if p.is_file()]
    assert len(written) >= 6, written  # allure results + attachments, jsonl, junit, capture, gate
    assert any(p.suffix == ".txt" for p in (reports / "allure-results").iterdir())  # attachments exist
    leaks = []
    for p in written:
        data = p.read_bytes()
        for what, value in planted.items():
            if value.encode() in data:
                leaks.append(f"{what} in {p.relative_to(tmp_path)}")
    for name, text in (("pytest terminal", run.stdout + run.stderr), ("hil gate terminal",
                                                                       gate.stdout + gate.stderr)):
        for what, value in planted.items():
            if value in text:
                leaks.append(f"{what} in {name}")
    assert leaks == [], "\n".join(leaks)
    # the evidence is still there, masked: the outputs were really written through these paths
    capture = (reports / "run" / "leak-run" / "console" / "hub-01.log").read_text()
    assert MASK in capture and "export API_TOKEN=" in capture
    assert MASK in (reports / "run" / "leak-run" / "results.jsonl").read_text()
    assert any(MASK in p.read_text(errors="replace") for p in (reports / "allure-results").iterdir())
