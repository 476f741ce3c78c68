"""I5 Use of insecure or outdated components: SBOMs judged against the advisory policy.

For the hub's OS packages and for each image of the candidate, a CycloneDX SBOM is made
(hil/software/sbom.py), written to reports/run/<id>/sbom/ (kept with gate.json) and
attached, then read back and judged against suites/security/advisories.yaml (OSV
records; hil/software/advisories.py) with dpkg's version order. A package an advisory
with a known fix affects fails the check (the policy's ``fail_on``/``require_fix``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hil.deploy.candidate import Candidate
from hil.hub import Hub
from hil.probes.packages import PackageInventory, hub_packages, image_packages
from hil.software.advisories import AdvisoryPolicy, AdvisoryVerdict, judge
from hil.software.sbom import Subject, build_sbom, packages_of, subject_of
from hil_pytest.allure_labels import CRITICAL
from hil_pytest.software import sbom_file_name
from suites.evidence import attach_evidence
from suites.security.owasp import owasp

if TYPE_CHECKING:
    import docker

Recorder = Callable[[str, dict[str, Any]], Path]


def _sbom_and_verdict(inv: PackageInventory, subject: Subject, policy: AdvisoryPolicy,
                      record: Recorder, file_name: str) -> tuple[dict[str, Any], AdvisoryVerdict]:
    doc = build_sbom(subject, inv.packages, inv.os_release, package_db=inv.package_db)
    record(file_name, doc)
    # judge what the SBOM says, so the recorded SBOM and the verdict cannot disagree
    listed, os_release = packages_of(doc), subject_of(doc)[1]
    assert len(listed) == len({(p.name, p.architecture) for p in inv.packages}), \
        f"{subject.name}: the SBOM lists {len(listed)} of {len(inv.packages)} packages"
    return doc, judge(subject.name, listed, os_release, policy)


def _failures(verdict: AdvisoryVerdict) -> str:
    return "; ".join(f"{m.package} {m.installed} ({m.advisory}, {m.why})" for m in verdict.blocking)


@owasp("I5", isvs="V3", severity=CRITICAL)
def test_os_packages_have_no_known_vulnerable_version(hub: Hub, advisories: AdvisoryPolicy,
                                                      record_sbom: Recorder) -> None:
    inv = hub_packages(hub.ssh, timeout=hub.timeouts.ssh_command)
    if not inv.package_db:
        pytest.skip(f"{hub.name}: no dpkg on this hub: its packages cannot be inventoried")
    subject = Subject("hub", hub.name, inv.os_release.pretty_name)
    _doc, verdict = _sbom_and_verdict(inv, subject, advisories, record_sbom, sbom_file_name("hub", hub.name))
    attach_evidence("advisory verdict", verdict)
    assert inv.packages, f"{hub.name}: dpkg lists no installed package (the inventory itself is suspect)"
    assert not verdict.blocking, \
        f"{hub.name}: outdated packages with known vulnerabilities: {_failures(verdict)}"
    if verdict.unjudged:
        pytest.skip(f"{hub.name}: not judged: {'; '.join(verdict.unjudged)[:300]}")


@pytest.mark.needs_service("docker")
@owasp("I5", isvs="V3", severity=CRITICAL)
def test_candidate_images_have_no_known_vulnerable_version(
        hub: Hub, candidate: Candidate, docker_engine: docker.DockerClient, advisories: AdvisoryPolicy,
        record_sbom: Recorder, image_sboms: dict[str, Any]) -> None:
    if not candidate.images:
        pytest.skip("the candidate names no container image")
    blocking: list[str] = []
    not_inventoried: list[str] = []
    for ref in candidate.images:
        # the hub pulls from the candidate's registry itself (TLS verified by its engine: test_i4)
        hub.ssh.run(["docker", "pull", ref], sudo=True, timeout=hub.timeouts.deployment).check()
        inv = image_packages(docker_engine, ref)
        if inv.image_digest not in image_sboms:  # one SBOM per image, whichever hub made it first
            subject = Subject("image", ref, inv.image_digest)
            image_sboms[inv.image_digest] = _sbom_and_verdict(
                inv, subject, advisories, record_sbom, sbom_file_name("image", ref, inv.image_digest))
        _doc, verdict = image_sboms[inv.image_digest]
        attach_evidence(f"advisory verdict {ref}", verdict)
        if not inv.package_db:
            not_inventoried.append(f"{ref}: no dpkg database (/var/lib/dpkg/status or status.d)")
        blocking += [f"{ref}: {_failures(verdict)}"] if verdict.blocking else []
        not_inventoried += [f"{ref}: {u}" for u in verdict.unjudged]
    assert not blocking, f"{hub.name}: candidate images with known-vulnerable packages: {'; '.join(blocking)}"
    if not_inventoried:
        pytest.skip(f"not judged: {'; '.join(not_inventoried)[:400]}")
