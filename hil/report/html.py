"""Build the static HTML report with the Allure report generator (allure-commandline).

The generator (a Java program; Java 17 runs it) is a tool the harness runs, so it is
pinned like a dependency: ``allure_tool/package.json`` names an exact version and the
committed ``allure_tool/package-lock.json`` its integrity hash. ``ensure_allure`` installs
exactly that with ``npm ci --ignore-scripts`` (no install scripts run, npm refuses a
tarball whose hash differs) into the user's cache folder ($HIL_TOOLS_DIR, else
$XDG_CACHE_HOME/hil/tools, else ~/.cache/hil/tools), never into the installed package:
one folder per lockfile digest, completed before it is renamed into place, so a changed
lockfile gets a fresh install and an interrupted one is never used.

History is carried from the previous report into the results before generating, so the
report shows trends across runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hil.errors import InfrastructureError, UserError
from hil.gate.ci import CiJob, ci_job
from hil.report.verdict import GateVerdict, write_verdict

TOOL_MANIFEST = Path(__file__).resolve().parent / "allure_tool"
"""package.json + package-lock.json: the pinned generator."""
INSTALLED_MARK = ".hil-lock-sha256"
NPM_INSTALL_TIMEOUT = 300.0
GENERATE_TIMEOUT = 300.0

# Allure matches these regexes against the whole message/trace (Java `matches`), hence
# the (?s).* wrappers. The plugin's class tags come first (hil.report.categories); these
# catch results written without the plugin: lab exception names, then the pytest status.
_INFRA_NAMES = ("InfrastructureError|DeviceUnreachable|CommandTimeout|HostKeyMismatch|LeaseNotGranted"
                "|LeaseTimeout|HubBroken|PowerError")
FALLBACK_CATEGORIES: list[dict[str, Any]] = [
    # the exception's name starts the message ("DeviceUnreachable: hub-02 ..."); the trace
    # is no use here: it quotes the test's source, which may name any exception
    {"name": "Infrastructure problems (lab could not do its part)",
     "matchedStatuses": ["broken", "failed", "skipped"],
     "messageRegex": rf"(?s)(Skipped: )?([Ii]nfrastructure:|([\w.]+\.)?({_INFRA_NAMES})\b).*"},
    {"name": "Product defects", "matchedStatuses": ["failed"]},
]


def categories() -> list[dict[str, Any]]:
    from hil.report.categories import CATEGORIES

    # the plugin's last, catch-all entry must stay last so that ours are tried before it
    catch_all = [c for c in CATEGORIES if "messageRegex" not in c and "traceRegex" not in c]
    tagged = [c for c in CATEGORIES if c not in catch_all]
    return [*tagged, *FALLBACK_CATEGORIES, *catch_all]


class ReportError(InfrastructureError):
    """The report generator could not be installed or failed (a tool of this machine, not a verdict)."""


def tools_dir() -> Path:
    """$HIL_TOOLS_DIR, else the user's cache folder (XDG): never the package's own folder."""
    if given := os.environ.get("HIL_TOOLS_DIR"):
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "hil" / "tools"


def lock_digest(manifest: Path = TOOL_MANIFEST) -> str:
    """sha256 over package.json and package-lock.json: names the install folder."""
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update(name.encode() + b"\0" + (manifest / name).read_bytes())
    return h.hexdigest()


def ensure_allure(tools: Path | None = None, *, timeout: float = NPM_INSTALL_TIMEOUT,
                  manifest: Path = TOOL_MANIFEST) -> Path:
    """The ``allure`` launcher of the pinned generator, installed with ``npm ci --ignore-scripts``
    from the committed lockfile into ``tools`` (the cache folder) on first use."""
    tools = tools or tools_dir()
    digest = lock_digest(manifest)
    home = tools / f"allure-{digest[:16]}"
    launcher = home / "node_modules" / ".bin" / "allure"
    mark = home / INSTALLED_MARK
    if launcher.exists() and mark.is_file() and mark.read_text(encoding="utf-8").strip() == digest:
        return launcher
    npm = shutil.which("npm")
    if npm is None:
        raise ReportError("npm is not installed: it is needed once to install the Allure report "
                          "generator (Debian: apt-get install npm)")
    if shutil.which("java") is None:
        raise ReportError("java is not installed: the Allure report generator needs Java 17 "
                          "(Debian: apt-get install openjdk-17-jre-headless)")
    tools.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=".allure-", dir=tools))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(manifest / name, work / name)
        # ci: exactly the lockfile (integrity checked), nothing resolved anew; no install scripts
        argv = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise ReportError(f"npm ci of the Allure report generator did not finish within "
                              f"{timeout:.0f} s") from None
        if proc.returncode != 0 or not (work / "node_modules" / ".bin" / "allure").exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise ReportError(f"npm ci of the Allure report generator failed (exit {proc.returncode}): "
                              + " | ".join(tail))
        (work / INSTALLED_MARK).write_text(digest + "\n", encoding="utf-8")
        if home.exists():
            shutil.rmtree(home)  # an older or broken install of the same lockfile
        try:
            os.replace(work, home)  # complete, or not there at all
        except OSError:
            if not launcher.exists():  # (another process was quicker: its install is as good)
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return launcher


def executor(job: CiJob, report_url: str | None = None,
             verdict: GateVerdict | None = None) -> dict[str, object]:
    """Allure's executor.json: who ran the tests, the entry linking to the CI job when there is one.

    With a gate decision, the report's title and the entry's build name carry it (hil.report.verdict).
    """
    doc: dict[str, object] = {"name": {"gitlab": "GitLab CI", "github": "GitHub Actions",
                                       "jenkins": "Jenkins"}.get(job.system, "hil (local)"),
                              "type": job.system}
    build = " ".join(p for p in (job.name, job.build_name and f"({job.build_name})") if p) or None
    title = "HIL gate report"
    if verdict is not None:
        build = f"{build or 'hil'}: {verdict.headline}"
        title = f"HIL gate: {verdict.headline}"
    for key, value in (("buildName", build), ("buildUrl", job.url or job.build_url),
                       ("url", job.url), ("reportUrl", report_url), ("reportName", title)):
        if value:
            doc[key] = value
    return doc


def carry_history(results: Path, previous_report: Path) -> bool:
    """Copy the previous report's history/ into the results (the trend graphs need it)."""
    src = previous_report / "history"
    if not src.is_dir():
        return False
    shutil.copytree(src, results / "history", dirs_exist_ok=True)
    return True


def build_report(results: Path, out: Path, *, allure: Path | None = None, job: CiJob | None = None,
                 timeout: float = GENERATE_TIMEOUT, gate_json: Path | None = None,
                 say: Callable[[str], None] | None = None) -> Path:
    """Generate the HTML report from ``results``; return the path of its index.html.

    ``gate_json``: the run's gate decision, shown in the report (hil.report.verdict).
    """
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise UserError("no allure results here (run pytest with --alluredir first)", file=str(results))
    launcher = allure or ensure_allure()
    carry_history(results, out)
    verdict = None
    if gate_json is not None:
        verdict, note = write_verdict(results, gate_json)
        if say is not None:
            say(note)
    (results / "executor.json").write_text(json.dumps(executor(job or ci_job(), verdict=verdict), indent=2),
                                           encoding="utf-8")
    # ours supersede the plugin's copy: the same tagged entries plus the untagged fallbacks
    (results / "categories.json").write_text(json.dumps(categories(), indent=2), encoding="utf-8")
    argv = [str(launcher), "generate", "--clean", str(results), "-o", str(out)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ReportError(f"allure generate did not finish within {timeout:.0f} s") from None
    index = out / "index.html"
    if proc.returncode != 0 or not index.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ReportError(f"allure generate failed (exit {proc.returncode}): " + " | ".join(tail))
    return index
