"""Local deployments: queued one at a time, resolved, merged, tracked, rolled back on request."""

from __future__ import annotations

import base64
import copy
import grp
import hashlib
import json
import os
import pwd
import queue
import shutil
import threading
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .kernel import BUILTIN_NAMES, Kernel, remove_tree, write_json_atomic
from .recipe import Recipe, RecipeError, load_recipe_file, recipe_files
from .semver import Range, Version, VersionError
from .service import BROKEN, ExternalService, RunAs, wait_until

LOGGER = "com.aws.greengrass.deployment.DeploymentService"
MERGER = "com.aws.greengrass.deployment.DeploymentConfigMerger"
DEFAULT_GROUP = "LOCAL_DEPLOYMENT"
DOWNLOADER = "com.aws.greengrass.componentmanager.builtins.S3Downloader"
TRACK_TIMEOUT = 3600.0  # a deployment waits at most this long for its components (safety net)
# Java MessageDigest names the recipe's Algorithm may use (matched case-insensitively, as Java does)
DIGESTS = {"MD5": "md5", "SHA-1": "sha1", "SHA-224": "sha224", "SHA-256": "sha256", "SHA-384": "sha384",
           "SHA-512": "sha512"}
POLL = 0.05


@dataclass
class DeploymentRequest:
    recipe_dir: str | None = None
    artifact_dir: str | None = None
    merge: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    group: str = DEFAULT_GROUP
    update_config: dict[str, Any] = field(default_factory=dict)
    run_with: dict[str, dict[str, str]] = field(default_factory=dict)
    failure_policy: str = "DO_NOTHING"


@dataclass
class DeploymentRecord:
    deploymentId: str
    createdOn: int  # epoch milliseconds
    status: str
    request: dict[str, Any]
    detailedStatus: str = ""
    errorStack: list[str] = field(default_factory=list)
    errorTypes: list[str] = field(default_factory=list)
    failureCause: str = ""


class DeploymentFailure(Exception):
    def __init__(self, cause: str, stack: list[str], types: list[str]) -> None:
        super().__init__(cause)
        self.cause, self.stack, self.types = cause, stack, types


@dataclass
class Plan:
    components: dict[str, dict[str, Any]]  # name -> {version, configuration, runWith}
    groups: dict[str, dict[str, str]]
    new_recipes: dict[tuple[str, str], Recipe]


class DeploymentService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.dir = kernel.layout.deployments
        self.records: dict[str, DeploymentRecord] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="pool-1-thread-1", daemon=True)

    # ---- persistence --------------------------------------------------------------------------

    def load(self) -> None:
        for path in sorted(self.dir.glob("*.json")):
            try:
                rec = DeploymentRecord(**json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError):
                continue
            self.records[rec.deploymentId] = rec
        # Deployments cut short by a power loss run again from the start (their files are spooled).
        for rec in sorted(self.records.values(), key=lambda r: r.createdOn):
            if rec.status in ("QUEUED", "IN_PROGRESS"):
                rec.status = "QUEUED"
                self._save(rec)
                self._queue.put(rec.deploymentId)

    def _save(self, rec: DeploymentRecord) -> None:
        write_json_atomic(self.dir / f"{rec.deploymentId}.json", asdict(rec))

    def start(self) -> None:
        self._thread.start()

    # ---- API ----------------------------------------------------------------------------------

    def submit(self, request: DeploymentRequest) -> str:
        dep_id = str(uuid.uuid4())
        spool = self.dir / dep_id
        spool.mkdir(parents=True)
        # Like the real CLI's updateRecipesAndArtifacts: copy now, so the caller may delete its files.
        for src, name in ((request.recipe_dir, "recipes"), (request.artifact_dir, "artifacts")):
            if src:
                if not Path(src).is_dir():
                    remove_tree(spool)
                    raise ValueError(f"{name[:-1].capitalize()} directory {src} does not exist or is not a directory")
                shutil.copytree(src, spool / name, symlinks=False)
        rec = DeploymentRecord(dep_id, int(time.time() * 1000), "QUEUED", asdict(request))
        with self._lock:
            self.records[dep_id] = rec
            self._save(rec)
        self.kernel.logs.main.write("INFO", LOGGER, "", "Received deployment in the queue",
                                    {"deploymentId": dep_id, "DeploymentType": "LOCAL",
                                     "serviceName": "DeploymentService", "currentState": "RUNNING"})
        self._queue.put(dep_id)
        return dep_id

    def get(self, dep_id: str) -> DeploymentRecord | None:
        with self._lock:
            return self.records.get(dep_id)

    def all(self) -> list[DeploymentRecord]:
        with self._lock:
            return sorted(self.records.values(), key=lambda r: r.createdOn)

    # ---- execution ----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            dep_id = self._queue.get()
            rec = self.get(dep_id)
            if rec is None or rec.status not in ("QUEUED",):
                continue
            try:
                self._execute(rec)
            except Exception as exc:  # keep the queue alive whatever happens
                self._finish(rec, "FAILED", "FAILED_NO_STATE_CHANGE", ["DEPLOYMENT_FAILURE", "NUCLEUS_ERROR"],
                             ["NUCLEUS_ERROR"], f"{type(exc).__name__}: {exc}")
            remove_tree(self.dir / dep_id)

    def _set_status(self, rec: DeploymentRecord, status: str) -> None:
        with self._lock:
            rec.status = status
            self._save(rec)

    def _finish(self, rec: DeploymentRecord, status: str, detailed: str = "", stack: list[str] | None = None,
                types: list[str] | None = None, cause: str = "") -> None:
        with self._lock:
            rec.status, rec.detailedStatus = status, detailed
            rec.errorStack, rec.errorTypes, rec.failureCause = stack or [], types or [], cause
            self._save(rec)
        self.kernel.logs.main.write("INFO", LOGGER, "", "Current deployment finished",
                                    {"DeploymentId": rec.deploymentId, "serviceName": "DeploymentService",
                                     "currentState": "RUNNING", "status": status, "detailedStatus": detailed})

    def _execute(self, rec: DeploymentRecord) -> None:
        request = DeploymentRequest(**rec.request)
        self._set_status(rec, "IN_PROGRESS")
        log = self.kernel.logs.main
        log.write("INFO", LOGGER, "deployment-task-execution", "Starting deployment task",
                  {"deploymentId": rec.deploymentId, "DeploymentType": "LOCAL"})
        spool = self.dir / rec.deploymentId
        try:
            plan = self._plan(request, spool)
        except DeploymentFailure as failure:
            log.write("ERROR", LOGGER, "deployment-failed", failure.cause, {"deploymentId": rec.deploymentId})
            self._finish(rec, "FAILED", "FAILED_NO_STATE_CHANGE", failure.stack, failure.types, failure.cause)
            return
        previous = self.kernel.snapshot_config()
        log.write("INFO", MERGER, "merge-config", "Applying deployment changes",
                  {"deploymentId": rec.deploymentId})
        self._install_artifacts(plan, spool / "artifacts")
        tracked = self._apply(plan.components, plan.groups)
        broken = self._track(tracked)
        if broken is None:
            self.kernel.save()
            self._finish(rec, "SUCCEEDED", "SUCCESSFUL")
            return
        cause = f"Service {broken} in broken state after deployment"
        stack = ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"]
        types = ["USER_COMPONENT_ERROR"]
        if request.failure_policy != "ROLLBACK":
            self.kernel.save()
            self._finish(rec, "FAILED", "FAILED_ROLLBACK_NOT_REQUESTED", stack, types, cause)
            return
        log.write("INFO", MERGER, "rollback", "Rolling back to the previous configuration",
                  {"deploymentId": rec.deploymentId})
        tracked = self._apply(previous["components"], previous["groups"])
        rollback_broken = self._track(tracked)
        self.kernel.save()
        detailed = "FAILED_ROLLBACK_COMPLETE" if rollback_broken is None else "FAILED_UNABLE_TO_ROLLBACK"
        self._finish(rec, "FAILED", detailed, stack, types, cause)

    # ---- planning (no state change) -----------------------------------------------------------

    def _plan(self, request: DeploymentRequest, spool: Path) -> Plan:
        candidates: dict[tuple[str, str], Recipe] = {}
        recipes_dir = spool / "recipes"
        if recipes_dir.is_dir():
            for path in recipe_files(recipes_dir):
                try:
                    recipe = load_recipe_file(path)
                except (RecipeError, OSError, UnicodeDecodeError) as exc:
                    raise DeploymentFailure(f"Failed to load recipe {path.relative_to(recipes_dir)}: {exc}",
                                            ["DEPLOYMENT_FAILURE", "COMPONENT_PACKAGE_LOADING_ERROR",
                                             "RECIPE_PARSE_ERROR"], ["COMPONENT_RECIPE_ERROR"]) from exc
                candidates[(recipe.name, recipe.version)] = recipe
        config = self.kernel.snapshot_config()
        groups: dict[str, dict[str, str]] = config["groups"]
        roots = dict(groups.get(request.group, {}))
        for name in request.remove:
            roots.pop(name, None)
        for name, version in request.merge.items():
            try:
                Version.parse(version)
            except VersionError as exc:
                raise DeploymentFailure(f"Invalid version {version} for component {name}",
                                        ["DEPLOYMENT_FAILURE", "INVALID_REQUEST"], ["REQUEST_ERROR"]) from exc
            roots[name] = version
        groups[request.group] = roots
        if not roots:
            del groups[request.group]
        resolved, recipes = self._resolve(groups, candidates)
        self._check_artifacts(resolved, recipes, spool / "artifacts")
        components: dict[str, dict[str, Any]] = {}
        for name, version in resolved.items():
            current = config["components"].get(name)
            default = recipes[name].default_config
            conf = copy.deepcopy(current["configuration"]) if current and isinstance(current.get("configuration"),
                                                                                        dict) else {}
            conf = _fill_defaults(conf, default)
            if name in request.update_config:
                conf = _apply_update(conf, default, request.update_config[name])
            run_with = request.run_with.get(name) or (current or {}).get("runWith") or {}
            components[name] = {"version": version, "configuration": conf, "runWith": run_with}
        new_recipes = {k: r for k, r in candidates.items() if resolved.get(k[0]) == k[1]}
        return Plan(components, groups, new_recipes)

    def _available(self, name: str, candidates: dict[tuple[str, str], Recipe]) -> list[str]:
        versions = set(self.kernel.stored_versions(name)) | {v for (n, v) in candidates if n == name}
        return sorted(versions, key=Version.parse, reverse=True)

    def _recipe(self, name: str, version: str, candidates: dict[tuple[str, str], Recipe]) -> Recipe:
        if (name, version) in candidates:
            return candidates[(name, version)]
        try:
            return self.kernel.load_stored_recipe(name, version)
        except (RecipeError, OSError) as exc:
            raise DeploymentFailure(str(exc), ["DEPLOYMENT_FAILURE", "COMPONENT_PACKAGE_LOADING_ERROR"],
                                    ["COMPONENT_RECIPE_ERROR"]) from exc

    def _resolve(self, groups: dict[str, dict[str, str]], candidates: dict[tuple[str, str], Recipe]
                 ) -> tuple[dict[str, str], dict[str, Recipe]]:
        chosen: dict[str, str] = {}
        recipes: dict[str, Recipe] = {}
        active = {n: c["version"] for n, c in self.kernel.snapshot_config()["components"].items()}
        for _ in range(100):
            constraints: dict[str, list[tuple[str, str]]] = {}
            for group, roots in sorted(groups.items()):
                for name, version in roots.items():
                    constraints.setdefault(name, []).append((group, "=" + version))
            for name in chosen:
                for dep, spec in recipes[name].dependencies.items():
                    constraints.setdefault(dep, []).append((name, spec.requirement))
            new: dict[str, str] = {}
            for name, reqs in constraints.items():
                ranges = [Range.parse(r) for _, r in reqs]
                if name in BUILTIN_NAMES:
                    builtin_version = self.kernel.version_of(name) or "0.0.0"
                    if all(r.satisfied_by(Version.parse(builtin_version)) for r in ranges):
                        continue
                    raise _no_version(name, reqs)
                options = self._available(name, candidates)
                ok = [v for v in options if all(r.satisfied_by(Version.parse(v)) for r in ranges)]
                if not ok:
                    raise _no_version(name, reqs)
                new[name] = active[name] if active.get(name) in ok else ok[0]
            for name, version in new.items():
                if recipes.get(name) is None or recipes[name].version != version:
                    recipes[name] = self._recipe(name, version, candidates)
            if new == chosen:
                return chosen, {n: recipes[n] for n in chosen}
            chosen = new
        raise DeploymentFailure("Dependency resolution did not converge",
                                ["DEPLOYMENT_FAILURE", "COMPONENT_VERSION_REQUIREMENTS_NOT_MET"], ["DEPENDENCY_ERROR"])

    def _check_artifacts(self, resolved: dict[str, str], recipes: dict[str, Recipe], spool: Path) -> None:
        for name, version in resolved.items():
            for artifact in recipes[name].artifacts:
                file_name = _artifact_file(artifact)
                if file_name is None:
                    continue
                # the deployment's copy replaces the stored one, so that is the file to verify
                path = spool / name / version / file_name
                if not path.exists():
                    path = self.kernel.layout.artifacts / name / version / file_name
                if not path.exists():
                    raise DeploymentFailure(
                        f"Failed to find artifact {file_name} of {name}-{version} in the local artifact directory",
                        ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR", "LOCAL_ARTIFACT_NOT_FOUND"],
                        ["USER_COMPONENT_ERROR"])
                self._verify_digest(name, version, artifact, path)

    def _verify_digest(self, name: str, version: str, artifact: dict[str, Any], path: Path) -> None:
        """As the nucleus's ArtifactDownloader: a recipe without Digest uses the local file as it is
        (a local recipe); with one, a file whose digest differs is not used. The real nucleus then
        downloads the artifact again and checks that copy; the stand-in has no cloud to download
        from, so it behaves as a download that delivered the same bytes: the integrity check fails
        and the deployment fails before anything changes (FAILED_NO_STATE_CHANGE)."""
        digest = _ci(artifact, "Digest")
        algorithm = _ci(artifact, "Algorithm")
        if not digest:
            return
        uri = str(_ci(artifact, "URI") or "")
        prefix = f"Failed to download artifact name: '{uri}' for component {name}-{version}, reason: "
        if not algorithm:
            raise DeploymentFailure(prefix + "Algorithm missing from artifact",
                                    ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR",
                                     "RECIPE_MISSING_ARTIFACT_HASH_ALGORITHM"], ["COMPONENT_RECIPE_ERROR"])
        hash_name = DIGESTS.get(str(algorithm).upper())
        if hash_name is None:
            raise DeploymentFailure(prefix + "Algorithm requested for artifact checksum is not supported",
                                    ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR",
                                     "HASHING_ALGORITHM_UNAVAILABLE"], ["DEVICE_ERROR"])
        h = hashlib.new(hash_name)
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if base64.b64encode(h.digest()).decode("ascii") == str(digest):
            return
        log = self.kernel.logs.main
        kv = {"artifactUri": uri, "componentIdentifier": name}
        log.write("WARN", DOWNLOADER, "", "Artifact appears to exist on disk, but the digest on disk does not "
                  "match the digest in the recipe. Will attempt to download it again.", kv)
        log.write("ERROR", DOWNLOADER, "download-artifact", "Integrity check for downloaded artifact failed. "
                  "Probably due to the file changing after creating the component version", kv)
        raise DeploymentFailure(
            "Integrity check for downloaded artifact failed. Probably due to the file changing after creating "
            f"the component version: {uri} of {name}-{version}",
            ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR", "ARTIFACT_CHECKSUM_MISMATCH"],
            ["COMPONENT_RECIPE_ERROR"])

    # ---- merge --------------------------------------------------------------------------------

    def _install_artifacts(self, plan: Plan, spool: Path) -> None:
        layout = self.kernel.layout
        for recipe in plan.new_recipes.values():
            self.kernel.store_recipe(recipe)
        for name, entry in plan.components.items():
            version = entry["version"]
            src = spool / name / version
            dest = layout.artifacts / name / version
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
            recipe = self.kernel.load_stored_recipe(name, version)
            for artifact in recipe.artifacts:
                file_name = _artifact_file(artifact)
                if file_name is None or not (dest / file_name).exists():
                    continue
                _apply_permission(dest / file_name, artifact, self.kernel.run_as_for(entry))
                if str(_ci(artifact, "Unarchive") or "NONE").upper() == "ZIP":
                    target = layout.unarchived / name / version / Path(file_name).stem
                    target.mkdir(parents=True, exist_ok=True)
                    with zipfile.ZipFile(dest / file_name) as archive:
                        archive.extractall(target)

    def _apply(self, components: dict[str, dict[str, Any]], groups: dict[str, dict[str, str]]
               ) -> list[ExternalService]:
        kernel = self.kernel
        with kernel.lock:
            current = kernel.external()
            versions = {n: c["version"] for n, c in components.items()}
            to_close = [s for n, s in current.items() if n not in components]
            replace: dict[str, dict[str, Any]] = {}
            for name, entry in components.items():
                svc = current.get(name)
                if svc is None:
                    replace[name] = entry
                    continue
                recipe = kernel.load_stored_recipe(name, entry["version"])
                lifecycle = kernel.resolved_lifecycle(recipe, entry.get("configuration"), versions)
                if (svc.version != entry["version"] or lifecycle != svc.lifecycle
                        or kernel.run_as_for(entry) != svc.run_as):
                    to_close.append(svc)
                    replace[name] = entry
                else:
                    svc.configuration = entry.get("configuration")
        # Shutdown scripts may take a while: the lock is not held, so the CLI can still list.
        _close_all(to_close)
        with kernel.lock:
            for svc in to_close:
                if kernel.services.get(svc.name) is svc:
                    del kernel.services[svc.name]
            kernel.config = {"groups": copy.deepcopy(groups), "components": copy.deepcopy(components)}
            for name, entry in replace.items():
                kernel.services[name] = kernel.build_service(name, entry, versions)
            tracked = [s for n, s in kernel.external().items() if n in components]
            for svc in tracked:
                if svc.name not in replace and svc.state == BROKEN:
                    svc.request("reinstall")  # a new deployment gives a broken component another chance
        return tracked

    def _track(self, services: list[ExternalService]) -> str | None:
        """None when every service settled in RUNNING/FINISHED, else the name of a BROKEN one."""
        broken: list[str] = []

        def done() -> bool:
            broken.extend(s.name for s in services if s.state == BROKEN)
            return bool(broken) or all(s.is_settled() for s in services)

        if not wait_until(done, TRACK_TIMEOUT, POLL):
            return next((s.name for s in services if not s.is_settled()), "unknown")
        return broken[0] if broken else None


def _close_all(services: list[ExternalService]) -> None:
    threads = [threading.Thread(target=s.close, daemon=True) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)


def _no_version(name: str, reqs: list[tuple[str, str]]) -> DeploymentFailure:
    constraints = ", ".join(f"{who} requires {req}" for who, req in reqs)
    return DeploymentFailure(
        "No local or cloud component version satisfies the requirements. Check whether the version constraints "
        "conflict and that the component exists in your AWS account with a version that matches the version "
        "constraints. If the version constraints conflict, revise deployments to resolve the conflict. "
        f"Component {name} version constraints: {constraints}",
        ["DEPLOYMENT_FAILURE", "NO_AVAILABLE_COMPONENT_VERSION", "COMPONENT_VERSION_REQUIREMENTS_NOT_MET"],
        ["DEPENDENCY_ERROR"])


def _ci(d: dict[str, Any], key: str) -> Any:
    for k, v in d.items():
        if str(k).lower() == key.lower():
            return v
    return None


def _artifact_file(artifact: dict[str, Any]) -> str | None:
    uri = str(_ci(artifact, "URI") or "")
    if not uri or uri.lower().startswith("docker:"):
        return None  # container images are pulled by the engine, not copied
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _apply_permission(path: Path, artifact: dict[str, Any], run_as: RunAs) -> None:
    """Permission OWNER means the component's run-as user, so the file is handed to that user."""
    if os.geteuid() == 0 and run_as.user:
        try:
            uid = pwd.getpwnam(run_as.user).pw_uid
            gid = grp.getgrnam(run_as.group).gr_gid if run_as.group else pwd.getpwnam(run_as.user).pw_gid
            os.chown(path, uid, gid)
        except KeyError:
            pass
    perm = _ci(artifact, "Permission") or {}
    read = str(_ci(perm, "Read") or "OWNER").upper()
    execute = str(_ci(perm, "Execute") or "NONE").upper()
    mode = 0o600  # the nucleus (owner) keeps write access
    mode |= {"OWNER": 0o040, "ALL": 0o044}.get(read, 0)
    mode |= {"OWNER": 0o110, "ALL": 0o111}.get(execute, 0)
    path.chmod(mode)


def _fill_defaults(conf: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(default)
    for k, v in conf.items():
        out[k] = _fill_defaults(v, out[k]) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _apply_update(conf: dict[str, Any], default: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """--update-config semantics: RESET pointers to their defaults first, then MERGE."""
    from .recipe import json_pointer

    for pointer in _ci(update, "RESET") or []:
        if pointer in ("", "/"):
            conf = copy.deepcopy(default)
            continue
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(pointer).lstrip("/").split("/")]
        parent: Any = conf
        for p in parts[:-1]:
            parent = parent.get(p) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        found, value = json_pointer(default, str(pointer))
        if found:
            parent[parts[-1]] = copy.deepcopy(value)
        else:
            parent.pop(parts[-1], None)
    merge = _ci(update, "MERGE")
    if isinstance(merge, dict):
        conf = _deep_merge(conf, merge)
    return conf
