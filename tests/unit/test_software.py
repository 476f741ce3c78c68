"""SBOMs and advisories (OWASP I5) and the secure-update probes (I4) on RECORDED hub outputs.

Recorded on the virtual lab (tests/data/software/): `apt-config dump` of a hardened
hub and of the vulnerable one, the vulnerable hub's vendor sources file, `dpkg-query`
of both, `docker info`'s RegistryConfig, os-release. OSV records in
tests/data/software/osv/ have the shape of osv.dev's Debian export.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil.probes.apt import insecure_entries, insecure_options, parse_config_dump, source_locations
from hil.probes.packages import parse_dpkg_query, parse_dpkg_status, parse_os_release
from hil.probes.registries import parse_registry_config
from hil.software.advisories import AdvisoryError, judge, load_advisories
from hil.software.sbom import OsRelease, Package, Subject, build_sbom, packages_of, subject_of

DATA = Path(__file__).resolve().parents[1] / "data" / "software"
REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "suites" / "security" / "advisories.yaml"
DEBIAN12 = parse_os_release((DATA / "os-release-debian12.txt").read_text())


def recorded(profile: str) -> list[Package]:
    packages, bad = parse_dpkg_query((DATA / f"dpkg-query-{profile}.txt").read_text())
    assert bad == 0
    return packages


# -- inventory and SBOM ----------------------------------------------------------------------------

def test_dpkg_query_and_os_release_of_a_recorded_hub() -> None:
    pkgs = {p.name: p for p in recorded("hardened")}
    assert len(pkgs) == 202
    assert pkgs["libssl3"].source_name == "openssl" and pkgs["libssl3"].source_ver == "3.0.20-1~deb12u2"
    # a binary with its own epoch, built from a source without one
    bsd = pkgs["bsdutils"]
    assert bsd.version == "1:2.38.1-5+deb12u3" and bsd.source_ver == "2.38.1-5+deb12u3"
    assert (DEBIAN12.id, DEBIAN12.version_id, DEBIAN12.distro) == ("debian", "12", "debian-12")
    assert parse_os_release('ID=raspbian\nID_LIKE="debian"\nVERSION_ID="12"\n').id_like == ("debian",)


def test_untrusted_dpkg_output_is_parsed_defensively() -> None:
    text = ("ok\t1.0\tall\tok\t1.0\tii \n"
            "gone\t2.0\tall\tgone\t2.0\trc \n"        # removed, config files left: not installed
            "garbage line without tabs\n"
            "\t\t\t\t\t\n")
    pkgs, bad = parse_dpkg_query(text)
    assert [p.name for p in pkgs] == ["ok"] and bad == 1  # a blank (all-tab) line is not counted


def test_dpkg_status_stanzas_as_distroless_images_keep_them() -> None:
    text = ("Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\n"
            "Version: 3.0.20-1~deb12u2\nDescription: Secure Sockets Layer toolkit\n shared libraries\n\n"
            "Package: busybox-static\nStatus: install ok installed\nArchitecture: amd64\n"
            "Source: busybox (1:1.35.0-4+deb12u1)\nVersion: 1:1.35.0-4+deb12u1+b1\n\n"
            "Package: old\nStatus: deinstall ok config-files\nVersion: 1\n\nVersion: 1\n")
    pkgs, bad = parse_dpkg_status(text)
    assert [(p.name, p.source_name, p.source_ver) for p in pkgs] == [
        ("libssl3", "openssl", "3.0.20-1~deb12u2"), ("busybox-static", "busybox", "1:1.35.0-4+deb12u1")]
    assert bad == 1


def test_sbom_is_valid_cyclonedx_and_reads_back_the_same_packages() -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    pkgs = recorded("hardened")
    doc = build_sbom(Subject("hub", "hub-01", DEBIAN12.pretty_name), pkgs, DEBIAN12)
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    assert errors is None, errors
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    assert doc["metadata"]["component"]["type"] == "device"
    purls = {c["purl"] for c in doc["components"]}
    assert "pkg:deb/debian/libssl3@3.0.20-1~deb12u2?arch=amd64&distro=debian-12" in purls
    back = {(p.name, p.version, p.source_name, p.source_ver) for p in packages_of(doc)}
    assert back == {(p.name, p.version, p.source_name, p.source_ver) for p in pkgs}
    subject, osr = subject_of(doc)
    assert (subject.kind, subject.name, osr.distro) == ("hub", "hub-01", "debian-12")


def test_image_sbom_says_when_there_is_no_package_database() -> None:
    subject = Subject("image", "registry.lab:5000/hil/web:1.0", "sha256:" + "ab" * 32)
    doc = build_sbom(subject, [], OsRelease(), package_db=False)
    comp = doc["metadata"]["component"]
    props = {p["name"]: p["value"] for p in comp["properties"]}
    assert comp["type"] == "container" and props["hil:package-db"] == "none"
    assert props["hil:image:digest"] == "sha256:" + "ab" * 32
    assert not doc.get("components")


# -- the advisory policy ---------------------------------------------------------------------------

def test_shipped_policy_fails_the_vulnerable_hub_and_passes_the_hardened_one() -> None:
    policy = load_advisories(POLICY)
    assert {a.id for a in policy.advisories} >= {"HIL-LAB-2026-0001"}
    bad = judge("hub-vuln", recorded("vulnerable"), DEBIAN12, policy)
    [m] = bad.blocking
    assert (m.advisory, m.package, m.installed, m.fixed, m.severity) == (
        "HIL-LAB-2026-0001", "hil-lab-demo-agent", "1.2.0~rc1-1", "1.2.0-2", "high")
    good = judge("hub-01", recorded("hardened"), DEBIAN12, policy)
    assert not good.matches and not good.unjudged and good.packages == 202


@pytest.fixture
def with_export(tmp_path: Path) -> Path:
    """The shipped policy plus the OSV export of tests/data/software/osv."""
    shutil.copytree(DATA / "osv", tmp_path / "osv")
    doc = yaml.safe_load(POLICY.read_text())
    doc["osv_exports"] = ["osv"]
    path = tmp_path / "advisories.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_osv_export_records_are_matched_by_source_package_and_release(with_export: Path) -> None:
    policy = load_advisories(with_export)
    assert policy.ignored == 1  # the npm record
    v = judge("hub-01", recorded("hardened"), DEBIAN12, policy)
    by = {(m.advisory, m.package): m for m in v.matches}
    # DSA-9901-1 names the source package openssl: both of its binaries are affected
    assert {p for a, p in by if a == "DSA-9901-1"} == {"libssl3", "openssl"}
    m = by[("DSA-9901-1", "libssl3")]
    assert m.blocking and m.fixed == "3.0.20-1~deb12u3" and m.severity == "unknown"
    assert m.aliases == ("CVE-2026-99001",)
    # Debian 11 only: not this hub's release
    assert not any(a == "DSA-9902-1" for a, _ in by)
    # fixed in deb12u4, installed deb12u14: not affected (text order would say otherwise)
    assert "2.36-9+deb12u14" < "2.36-9+deb12u4"
    assert not any(a == "DEBIAN-CVE-2026-99003" for a, _ in by)
    # affected, no fix yet: reported, not failing (require_fix: true)
    nofix = [m for (a, _), m in by.items() if a == "DEBIAN-CVE-2026-99004"]
    assert {m.package for m in nofix} >= {"util-linux", "bsdutils"}
    assert all(not m.blocking and "no fixed version" in m.why for m in nofix)


def test_ubuntu_and_derived_distributions(with_export: Path) -> None:
    policy = load_advisories(with_export)
    pkgs = recorded("vulnerable")
    ubuntu = judge("u", pkgs, OsRelease(id="ubuntu", version_id="22.04"), policy)
    assert not ubuntu.matches  # Debian records are not Ubuntu's
    raspbian = judge("r", pkgs, OsRelease(id="raspbian", version_id="12", id_like=("debian",)), policy)
    assert {m.advisory for m in raspbian.blocking} == {"HIL-LAB-2026-0001", "DSA-9901-1"}
    alpine = judge("a", pkgs, OsRelease(id="alpine", version_id="3.19"), policy)
    assert not alpine.matches and "not one this check judges" in alpine.unjudged[0]


def _policy(tmp_path: Path, **doc: Any) -> Path:
    base: dict[str, Any] = {"version": 1, "advisories": []}
    base.update(doc)
    path = tmp_path / "advisories.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def _record(events: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {"id": "T-1", "affected": [{"package": {"ecosystem": "Debian", "name": "hil-lab-demo-agent"},
                                       "ranges": [{"type": "ECOSYSTEM", "events": events}], **extra}]}


TWO_RANGES = [{"introduced": "0"}, {"fixed": "1.0"}, {"introduced": "1.2"}, {"fixed": "1.2.0-2"}]


@pytest.mark.parametrize(("events", "versions", "installed", "hit"), [
    ([{"introduced": "0"}, {"fixed": "1.2.0-2"}], [], "1.2.0~rc1-1", True),
    ([{"introduced": "0"}, {"fixed": "1.2.0-2"}], [], "1.2.0-2", False),
    ([{"introduced": "1.1"}, {"fixed": "1.2.0-2"}], [], "1.0-9", False),
    ([{"introduced": "0"}, {"last_affected": "1.2.0~rc1-1"}], [], "1.2.0~rc1-1", True),
    ([{"introduced": "0"}, {"last_affected": "1.2.0~rc1-1"}], [], "1.2.0-1", False),
    (TWO_RANGES, [], "1.1", False),
    (TWO_RANGES, [], "1.2.0-1", True),
    ([{"introduced": "0"}, {"fixed": "1:0.1"}], [], "1.2.0-1", True),  # the epoch wins
    ([{"introduced": "5.0"}], ["1.2.0-1"], "1.2.0-1", True),  # listed explicitly
])
def test_osv_range_evaluation(tmp_path: Path, events: list[dict[str, str]], versions: list[str],
                              installed: str, hit: bool) -> None:
    policy = load_advisories(_policy(tmp_path, advisories=[_record(events, versions=versions)]))
    v = judge("h", [Package("hil-lab-demo-agent", installed)], DEBIAN12, policy)
    assert bool(v.matches) is hit


VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


def test_severity_and_the_policy_thresholds(tmp_path: Path) -> None:
    events = [{"introduced": "0"}, {"fixed": "2.0"}]
    pkg = [Package("hil-lab-demo-agent", "1.0")]
    for rec, want in ((_record(events) | {"database_specific": {"severity": "MODERATE"}}, "medium"),
                      (_record(events) | {"severity": [{"type": "CVSS_V3", "score": "9.8"}]}, "critical"),
                      (_record(events) | {"severity": [{"type": "CVSS_V3", "score": VECTOR}]}, "unknown"),
                      (_record(events, ecosystem_specific={"urgency": "low"}), "low")):
        policy = load_advisories(_policy(tmp_path, fail_on=["critical", "high"], advisories=[rec]))
        [m] = judge("h", pkg, DEBIAN12, policy).matches
        assert m.severity == want
        assert m.blocking is (want in ("critical", "high"))
    nofix = _record([{"introduced": "0"}]) | {"database_specific": {"severity": "HIGH"}}
    [m] = judge("h", pkg, DEBIAN12, load_advisories(_policy(tmp_path, advisories=[nofix]))).matches
    assert not m.blocking
    [m] = judge("h", pkg, DEBIAN12, load_advisories(_policy(tmp_path, require_fix=False,
                                                            advisories=[nofix]))).matches
    assert m.blocking and m.why == "high; no fix known"


@pytest.mark.parametrize(("doc", "field", "words"), [
    ({"fail_on": ["severe"]}, "fail_on", "must be a list of"),
    ({"advisorys": []}, "advisorys", "unknown field"),
    ({"version": 2}, "version", "must be 1"),
    ({"advisories": [{"affected": []}]}, "advisories[0].id", "required"),
    ({"advisories": [{"id": "X", "affected": [{"package": {"name": "p"}}]}]},
     "advisories[0].affected[0].package", "ecosystem"),
    ({"advisories": [_record([{"introduced": "0"}, {"fixed": "1.0 beta"}])]},
     "advisories[0].affected[0].ranges[0].events[1].fixed", "not a Debian version"),
    ({"advisories": [_record([{"introduced": "0", "fixed": "1.0"}])]},
     "advisories[0].affected[0].ranges[0].events[0]", "each event is one of"),
    ({"osv_exports": ["missing-folder"]}, "osv_exports", "not a folder"),
])
def test_policy_errors_name_file_and_field(tmp_path: Path, doc: dict[str, Any], field: str,
                                           words: str) -> None:
    path = _policy(tmp_path, **doc)
    with pytest.raises(AdvisoryError) as ei:
        load_advisories(path)
    msg = str(ei.value)
    assert msg.startswith(f"file {path}, field {field}: "), msg
    assert words in msg


def test_a_broken_export_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "osv").mkdir()
    (tmp_path / "osv" / "bad.json").write_text("{not json")
    with pytest.raises(AdvisoryError, match=r"bad.json: not an OSV JSON record"):
        load_advisories(_policy(tmp_path, osv_exports=["osv"]))


# -- I4: apt and the engine --------------------------------------------------------------------------

def test_apt_effective_config_of_recorded_hubs() -> None:
    hard = parse_config_dump((DATA / "apt-config-dump-hardened.txt").read_text())
    vuln = parse_config_dump((DATA / "apt-config-dump-vulnerable.txt").read_text())
    found, bad = insecure_options(hard)
    assert bad == [] and found["Acquire::AllowInsecureRepositories"] == "0"
    _found, bad = insecure_options(vuln)
    assert bad == ['APT::Get::AllowUnauthenticated "true"', 'Acquire::AllowInsecureRepositories "true"']
    assert source_locations(hard) == ("/etc/apt/sources.list", "/etc/apt/sources.list.d")
    assert source_locations({"Dir": "/", "Dir::Etc": "/srv/apt", "Dir::Etc::sourcelist": "/x/s.list",
                             "Dir::Etc::sourceparts": "parts"}) == ("/x/s.list", "/srv/apt/parts")


@pytest.mark.parametrize(("value", "insecure"), [("1", True), ("yes", True), ("True", True), ("on", True),
                                                 ("enable", True), ("0", False), ("false", False),
                                                 ("no", False)])
def test_apt_truth_values(value: str, insecure: bool) -> None:
    assert bool(insecure_options({"apt::get::allowunauthenticated": value})[1]) is insecure


def test_sources_trusted_and_allow_insecure_entries() -> None:
    vendor = (DATA / "hbs-vendor.list").read_text()
    [hit] = insecure_entries("/etc/apt/sources.list.d/hbs-vendor.list", vendor)
    assert hit.option == "trusted=yes" and hit.line == 2
    text = ("deb http://deb.debian.org/debian bookworm main\n"
            "# deb [trusted=yes] http://commented.example/ bookworm main\n"
            "deb [arch=arm64 allow-insecure=yes] http://a.example/ bookworm main\n"
            "deb-src [ signed-by=/usr/share/keyrings/k.gpg trusted=no ] http://b.example/ bookworm main\n")
    assert [e.option for e in insecure_entries("/etc/apt/sources.list", text)] == ["allow-insecure=yes"]
    deb822 = ("Types: deb\nURIs: http://c.example/\nSuites: bookworm\nComponents: main\nTrusted: yes\n\n"
              "Types: deb\nURIs: http://d.example/\nSuites: bookworm\nSigned-By: /k.gpg\n"
              "# Trusted: yes\n")
    [hit] = insecure_entries("/etc/apt/sources.list.d/c.sources", deb822)
    assert hit.option == "Trusted: yes" and hit.line == 5


def test_engine_registry_config() -> None:
    recorded_config = json.loads((DATA / "docker-registry-config-hardened.json").read_text())
    hard = parse_registry_config("hub-01", recorded_config)
    assert hard.secure and hard.insecure_cidrs == [] and hard.insecure_registries == []
    vuln = parse_registry_config("hub-vuln", {
        "InsecureRegistryCIDRs": ["127.0.0.0/8", "172.28.0.0/16"],
        "IndexConfigs": {"docker.io": {"Name": "docker.io", "Secure": True, "Official": True},
                         "registry.lab:5000": {"Name": "registry.lab:5000", "Mirrors": [], "Secure": False}}})
    assert not vuln.secure
    assert vuln.insecure_registries == ["registry.lab:5000"] and vuln.insecure_cidrs == ["172.28.0.0/16"]
