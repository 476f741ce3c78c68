"""The running component set, the component store and the persisted configuration."""

from __future__ import annotations

import copy
import grp
import json
import os
import pwd
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import NUCLEUS_VERSION
from .logfmt import Logs
from .recipe import InterpolationContext, Recipe, RecipeError, interpolate_tree, load_recipe_file
from .semver import Version, VersionError
from .service import FINISHED, RUNNING, ExternalService, RunAs, Service

DOCKER_APP_MANAGER = "aws.greengrass.DockerApplicationManager"
DOCKER_APP_MANAGER_VERSION = "2.0.11"

# name, version, state, configuration – listed in this order, as a real device lists them.
BUILTINS: list[tuple[str, str, str, Any]] = [
    ("aws.greengrass.Nucleus", NUCLEUS_VERSION, FINISHED, None),  # configuration filled in at start
    ("DeploymentService", "0.0.0", RUNNING, None),
    ("TelemetryAgent", "0.0.0", RUNNING, None),
    ("UpdateSystemPolicyService", "0.0.0", RUNNING, None),
    ("FleetStatusService", "0.0.0", RUNNING, None),
    ("aws.greengrass.Cli", NUCLEUS_VERSION, RUNNING, {"AuthorizedPosixGroups": None, "AuthorizedWindowsGroups": None}),
    (DOCKER_APP_MANAGER, DOCKER_APP_MANAGER_VERSION, FINISHED, {}),
]
BUILTIN_NAMES = {b[0] for b in BUILTINS}


@dataclass
class Layout:
    root: Path

    @property
    def recipes(self) -> Path:
        return self.root / "packages" / "recipes"

    @property
    def artifacts(self) -> Path:
        return self.root / "packages" / "artifacts"

    @property
    def unarchived(self) -> Path:
        return self.root / "packages" / "artifacts-unarchived"

    @property
    def config_file(self) -> Path:
        return self.root / "config" / "effectiveConfig.json"

    @property
    def deployments(self) -> Path:
        return self.root / "deployments"

    def work(self, name: str) -> Path:
        return self.root / "work" / name

    def create(self) -> None:
        for d in (self.root / "bin", self.root / "config", self.deployments, self.root / "logs", self.recipes,
                  self.artifacts, self.unarchived, self.root / "work"):
            d.mkdir(parents=True, exist_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def parse_posix_user(text: str | None) -> RunAs:
    if not text:
        return RunAs(None, None)
    user, _, group = text.partition(":")
    return RunAs(user or None, group or None)


class Kernel:
    def __init__(self, root: Path, thing_name: str, default_user: str) -> None:
        self.layout = Layout(root)
        self.layout.create()
        self.root = root
        self.thing_name = thing_name
        self.default_user = default_user
        self.logs = Logs(root / "logs")
        self.lock = threading.RLock()
        self.services: dict[str, Service] = {}
        self.config: dict[str, Any] = {"groups": {}, "components": {}}
        if self.layout.config_file.exists():
            self.config = json.loads(self.layout.config_file.read_text(encoding="utf-8"))

    # ---- start-up -----------------------------------------------------------------------------

    def start(self) -> None:
        nucleus_config = {"runWithDefault": {"posixUser": self.default_user}, "componentStoreMaxSizeBytes": "10000000000",
                          "platformOverride": {}, "deploymentPollingFrequencySeconds": "15",
                          "iotRoleAlias": "", "awsRegion": "us-east-1"}
        for name, version, state, conf in BUILTINS:
            conf = nucleus_config if name == "aws.greengrass.Nucleus" else conf
            self.services[name] = Service(name, version, configuration=conf, builtin_state=state,
                                          main_log=self.logs.main)
        for name, entry in sorted(self.config["components"].items()):
            try:
                self.services[name] = self.build_service(name, entry)
            except (RecipeError, OSError) as exc:
                self.logs.main.write("ERROR", "com.aws.greengrass.lifecyclemanager.Kernel", "service-load-error",
                                     str(exc), {"serviceName": name})

    # ---- component store ----------------------------------------------------------------------

    def stored_recipe_path(self, name: str, version: str) -> Path | None:
        for ext in ("yaml", "json"):
            p = self.layout.recipes / f"{name}-{version}.{ext}"
            if p.exists():
                return p
        return None

    def stored_versions(self, name: str) -> list[str]:
        versions = []
        for p in self.layout.recipes.glob(f"{name}-*"):
            if p.suffix not in (".yaml", ".json"):
                continue
            candidate = p.name[len(name) + 1:-len(p.suffix)]
            try:
                Version.parse(candidate)
            except VersionError:
                continue
            versions.append(candidate)
        return versions

    def load_stored_recipe(self, name: str, version: str) -> Recipe:
        path = self.stored_recipe_path(name, version)
        if path is None:
            raise RecipeError(f"Recipe of {name}-{version} not found in the component store")
        return load_recipe_file(path)

    def store_recipe(self, recipe: Recipe) -> None:
        for ext in ("yaml", "json"):
            (self.layout.recipes / f"{recipe.name}-{recipe.version}.{ext}").unlink(missing_ok=True)
        (self.layout.recipes / recipe.file_name).write_text(recipe.text, encoding="utf-8")

    # ---- services -----------------------------------------------------------------------------

    def run_as_for(self, entry: dict[str, Any]) -> RunAs:
        posix = (entry.get("runWith") or {}).get("posixUser") or self.default_user
        return parse_posix_user(posix)

    def resolved_lifecycle(self, recipe: Recipe, configuration: Any, dep_versions: dict[str, str]) -> dict[str, Any]:
        deps = {}
        for dep in recipe.dependencies:
            version = dep_versions.get(dep) or self.version_of(dep)
            if version:
                deps[dep] = (version, self.configuration_of(dep))
        ctx = InterpolationContext(self.root, recipe.name, recipe.version, self.thing_name,
                                   configuration if isinstance(configuration, dict) else {}, deps)
        return interpolate_tree(recipe.lifecycle, ctx)  # type: ignore[no-any-return]

    def version_of(self, name: str) -> str | None:
        svc = self.services.get(name)
        return svc.version if svc else None

    def configuration_of(self, name: str) -> dict[str, Any]:
        svc = self.services.get(name)
        return svc.configuration if svc and isinstance(svc.configuration, dict) else {}

    def component_env(self, name: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": os.environ.get("HOME", "/root"),
            "AWS_IOT_THING_NAME": self.thing_name,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "GG_ROOT_CA_PATH": str(self.root / "rootCA.pem"),
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": str(self.root / "ipc.socket"),
            "SVCUID": secrets.token_urlsafe(16),
            "GGC_ROOT_PATH": str(self.root),
        }

    def prepare_work_dir(self, name: str, run_as: RunAs) -> None:
        work = self.layout.work(name)
        work.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and run_as.user:
            try:
                uid = pwd.getpwnam(run_as.user).pw_uid
                gid = grp.getgrnam(run_as.group).gr_gid if run_as.group else pwd.getpwnam(run_as.user).pw_gid
                os.chown(work, uid, gid)
                os.chmod(work, 0o700)
            except KeyError:
                pass  # unknown user: the spawn itself will fail and the service goes ERRORED

    def build_service(self, name: str, entry: dict[str, Any], dep_versions: dict[str, str] | None = None
                      ) -> ExternalService:
        recipe = self.load_stored_recipe(name, entry["version"])
        run_as = self.run_as_for(entry)
        self.prepare_work_dir(name, run_as)
        lifecycle = self.resolved_lifecycle(recipe, entry.get("configuration"), dep_versions or {})
        hard = [d for d, dep in recipe.dependencies.items() if dep.hard]
        return ExternalService(name, entry["version"], lifecycle=lifecycle, configuration=entry.get("configuration"),
                               hard_deps=hard, root=self.root, logs=self.logs, env=self.component_env(name),
                               run_as=run_as, dependency_state=self.state_of)

    def state_of(self, name: str) -> str | None:
        svc = self.services.get(name)
        return svc.state if svc else None

    def external(self) -> dict[str, ExternalService]:
        return {n: s for n, s in self.services.items() if isinstance(s, ExternalService)}

    def component_list(self) -> list[dict[str, Any]]:
        with self.lock:
            builtins = [s.snapshot() for n, s in self.services.items() if n in BUILTIN_NAMES]
            others = [self.services[n].snapshot() for n in sorted(self.services) if n not in BUILTIN_NAMES]
        return builtins + others

    def save(self) -> None:
        with self.lock:
            write_json_atomic(self.layout.config_file, self.config)

    def snapshot_config(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.config)

    def shutdown(self) -> None:
        services = list(self.external().values())
        threads = [threading.Thread(target=s.close, daemon=True) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
