"""Software bills of materials: CycloneDX JSON of a hub's OS packages or of a container image.

Made with cyclonedx-python-lib (the ``security`` extra). Each Debian package is a
component with a ``pkg:deb`` package URL (``?arch=...&distro=debian-12``) and, when the
binary package comes from a differently named or versioned source package, the
properties ``hil:deb:source`` / ``hil:deb:source_version``: Debian advisories (DSA,
DLA, Debian's OSV records) name source packages. The advisory check reads packages
back from the SBOM document (``packages_of``), so it judges exactly what was recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.extras import needs_extra

SPEC_VERSION = "1.6"
SOURCE_PROPERTY = "hil:deb:source"
SOURCE_VERSION_PROPERTY = "hil:deb:source_version"


@dataclass(frozen=True)
class Package:
    """One installed Debian package (binary), with the source package it was built from."""

    name: str
    version: str
    architecture: str = ""
    source: str = ""
    """Source package name ('' = same as the binary)."""
    source_version: str = ""
    """Source version ('' = same as the binary's)."""

    @property
    def source_name(self) -> str:
        return self.source or self.name

    @property
    def source_ver(self) -> str:
        return self.source_version or self.version


@dataclass(frozen=True)
class OsRelease:
    """/etc/os-release: which distribution (and release) the packages belong to."""

    id: str = ""
    version_id: str = ""
    pretty_name: str = ""
    id_like: tuple[str, ...] = ()
    """Distributions this one derives from (Raspberry Pi OS 32-bit: ``raspbian`` like ``debian``)."""

    @property
    def distro(self) -> str:
        """The purl ``distro`` qualifier, e.g. debian-12 ('' when unknown)."""
        return f"{self.id}-{self.version_id}" if self.id and self.version_id else self.id


@dataclass(frozen=True)
class Subject:
    """What an SBOM describes: a hub (its OS) or a container image."""

    kind: str
    """``hub`` or ``image``."""
    name: str
    """Device name, or image reference."""
    version: str = ""
    """OS pretty name, or the image's registry digest."""


def build_sbom(subject: Subject, packages: Iterable[Package], os_release: OsRelease,
               *, package_db: bool = True) -> dict[str, Any]:
    """A CycloneDX (1.6) document as a JSON-ready dict. ``package_db=False``: the subject
    has no dpkg database (e.g. a static busybox image), said in a property, not hidden."""
    with needs_extra("security"):
        from cyclonedx.model import Property
        from cyclonedx.model.bom import Bom
        from cyclonedx.model.component import Component, ComponentType
        from cyclonedx.output import make_outputter
        from cyclonedx.schema import OutputFormat, SchemaVersion
        from packageurl import PackageURL

    props = [Property(name="hil:subject:kind", value=subject.kind),
             Property(name="hil:os:id", value=os_release.id or "unknown"),
             Property(name="hil:os:version_id", value=os_release.version_id or "unknown"),
             Property(name="hil:os:id_like", value=" ".join(os_release.id_like)),
             Property(name="hil:package-db", value="dpkg" if package_db else "none")]
    if subject.kind == "image" and subject.version:
        props.append(Property(name="hil:image:digest", value=subject.version))
    root = Component(name=subject.name, version=subject.version or None,
                     bom_ref=f"{subject.kind}:{subject.name}", properties=props,
                     type=ComponentType.DEVICE if subject.kind == "hub" else ComponentType.CONTAINER)
    bom = Bom()
    bom.metadata.component = root
    components = []
    seen: set[str] = set()
    for p in sorted(packages, key=lambda p: (p.name, p.architecture)):
        qualifiers = {k: v for k, v in (("arch", p.architecture), ("distro", os_release.distro)) if v}
        purl = PackageURL(type="deb", namespace=os_release.id or "debian", name=p.name, version=p.version,
                          qualifiers=qualifiers)
        ref = purl.to_string()
        if ref in seen:
            continue
        seen.add(ref)
        extra = []
        if p.source and p.source != p.name:
            extra.append(Property(name=SOURCE_PROPERTY, value=p.source))
        if p.source_version and p.source_version != p.version:
            extra.append(Property(name=SOURCE_VERSION_PROPERTY, value=p.source_version))
        components.append(Component(name=p.name, version=p.version, purl=purl, bom_ref=ref,
                                    type=ComponentType.LIBRARY, properties=extra))
    bom.components.update(components)
    bom.register_dependency(root, components)
    text = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string()
    doc: dict[str, Any] = json.loads(text)
    return doc


def write_sbom(doc: Mapping[str, Any], path: Path) -> str:
    """Write the document (written whole: no reader sees half a file); return its sha256."""
    data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def subject_of(doc: Mapping[str, Any]) -> tuple[Subject, OsRelease]:
    """The subject and OS a CycloneDX document (ours or anyone's) says it describes."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    comp = meta.get("component") if isinstance(meta, Mapping) else None
    comp = comp if isinstance(comp, Mapping) else {}
    props = _properties(comp)
    kind = props.get("hil:subject:kind") or ("image" if comp.get("type") == "container" else "hub")
    subject = Subject(kind=kind, name=str(comp.get("name") or "?"), version=str(comp.get("version") or ""))
    os_id, os_ver = props.get("hil:os:id", ""), props.get("hil:os:version_id", "")
    return subject, OsRelease(id="" if os_id == "unknown" else os_id,
                              version_id="" if os_ver == "unknown" else os_ver,
                              id_like=tuple(props.get("hil:os:id_like", "").split()))


def packages_of(doc: Mapping[str, Any]) -> list[Package]:
    """The Debian packages an SBOM lists (components with a ``pkg:deb`` purl)."""
    with needs_extra("security"):
        from packageurl import PackageURL

    out: list[Package] = []
    comps = doc.get("components")
    for comp in comps if isinstance(comps, list) else []:
        if not isinstance(comp, Mapping) or not isinstance(comp.get("purl"), str):
            continue
        try:
            purl = PackageURL.from_string(comp["purl"])
        except ValueError:
            continue
        if purl.type != "deb" or not purl.version:
            continue
        props = _properties(comp)
        quals = purl.qualifiers if isinstance(purl.qualifiers, dict) else {}
        out.append(Package(name=purl.name, version=purl.version, architecture=str(quals.get("arch", "")),
                           source=props.get(SOURCE_PROPERTY, ""),
                           source_version=props.get(SOURCE_VERSION_PROPERTY, "")))
    return out


def _properties(node: Mapping[str, Any]) -> dict[str, str]:
    raw = node.get("properties")
    return {str(p["name"]): str(p.get("value", "")) for p in raw if isinstance(p, Mapping) and "name" in p} \
        if isinstance(raw, list) else {}
