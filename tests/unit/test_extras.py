"""Dependencies: extras declared once, a missing one named in the error, bounds on 0.x, --version."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from hil.extras import DISTRIBUTION, EXTRAS, MissingExtra, extra_program, needs_extra

# extras that only bundle others or the harness's own tooling
_BUNDLES = {"all", "dev"}


def _requirements() -> list[Requirement]:
    return [Requirement(r) for r in md.requires(DISTRIBUTION) or []]


def _extra_of(req: Requirement) -> str | None:
    m = re.search(r'extra == "([^"]+)"', str(req.marker or ""))
    return m.group(1) if m else None


def test_extras_in_code_are_the_extras_of_the_package() -> None:
    declared = set(md.metadata(DISTRIBUTION).get_all("Provides-Extra") or [])
    assert set(EXTRAS) == declared - _BUNDLES


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_provides_the_modules_and_programs_it_names(extra: str) -> None:
    names = {req.name.lower() for req in _requirements() if _extra_of(req) == extra}
    for module in EXTRAS[extra].modules:
        assert md.packages_distributions().get(module), f"{module} is not installed"
        dists = {d.lower() for d in md.packages_distributions()[module]}
        assert dists & names, f"extra {extra!r} does not require the distribution of {module}"
    for program in EXTRAS[extra].programs:
        assert program in names, f"extra {extra!r} does not require {program}"


def test_unused_fabric_is_not_a_dependency() -> None:
    assert "fabric" not in {r.name.lower() for r in _requirements()}


def test_every_0x_dependency_has_an_upper_bound() -> None:
    """A 0.x library may break its API in a minor release (typer did): pin below the next one."""
    unbounded = []
    for req in _requirements():
        lower = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
        if lower and lower[0].startswith("0.") and not any(s.operator in ("<", "<=", "==", "~=")
                                                         for s in req.specifier):
            unbounded.append(str(req))
    assert not unbounded, f"0.x dependencies without an upper bound: {unbounded}"


def test_a_missing_module_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sslyze", None)  # import now raises ModuleNotFoundError
    from hil.probes.tls import tls_scan

    with pytest.raises(MissingExtra, match=re.escape(f"pip install '{DISTRIBUTION}[security]'")):
        tls_scan("127.0.0.1", 9, ca_file=Path("/nonexistent"))


def test_an_undeclared_import_error_is_not_disguised() -> None:
    with pytest.raises(ModuleNotFoundError), needs_extra("plots"):
        import hil_no_such_module  # type: ignore[import-not-found]  # noqa: F401


def test_postgres_store_without_its_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hil.inventory import Inventory
    from hil.lease import LEASE_STORES, make_lease_store

    for scheme in ("postgres", "postgresql"):
        monkeypatch.delitem(LEASE_STORES, scheme, raising=False)
    monkeypatch.delitem(sys.modules, "hil.lease.postgres", raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    inv = Inventory(path=tmp_path / "rack.yaml", sha256="0", devices={})
    make_lease_store(inv)  # file locks need nothing optional
    with pytest.raises(MissingExtra, match=r"'postgres' extra"):
        make_lease_store(inv, "postgresql://hil@127.0.0.1/leases")


def test_a_missing_program_names_its_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingExtra, match=r"'ssh-audit'.*'security' extra"):
        extra_program("security", "ssh-audit")


def test_latency_plot_without_matplotlib_keeps_the_figures(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    import hil_pytest.latency
    from hil.probes.latency import Budget, evidence_from_samples

    def no_matplotlib(*_args: object, **_kwargs: object) -> Path:
        # what plot_latency raises without the extra (its import goes through needs_extra);
        # sys.modules is left alone: other tests in this process plot for real
        raise MissingExtra("plots", "the Python package 'matplotlib'")

    monkeypatch.setattr(hil_pytest.latency, "plot_latency", no_matplotlib)
    evidence = evidence_from_samples("ssh_rtt", [0.001, 0.002, 0.003], device="hub-a")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        png = hil_pytest.latency._plot([evidence], tmp_path / "p.png", title="t",
                                       budget=Budget("ssh_rtt", 50, 100))
    assert png is None
    assert any("'plots' extra" in str(w.message) for w in seen)


def test_without_matplotlib_plot_latency_names_its_extra() -> None:
    """In a process of its own: this one's matplotlib stays as it is for the other tests."""
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from pathlib import Path\n"
            "from hil.probes.latency import evidence_from_samples, plot_latency\n"
            "plot_latency([evidence_from_samples('x', [0.001, 0.002])], Path('unused.png'))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode != 0
    assert "MissingExtra: the Python package 'matplotlib'" in res.stderr
    assert f"pip install '{DISTRIBUTION}[plots]'" in res.stderr


def test_hil_version_is_the_package_version() -> None:
    hil = Path(sys.executable).parent / "hil"
    out = subprocess.run([str(hil), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{DISTRIBUTION} {md.version(DISTRIBUTION)}"
