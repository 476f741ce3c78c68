"""Which CI job is running us (for the ledger, executor.json and the gate record)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class CiJob:
    system: str
    """gitlab | github | jenkins | local"""
    name: str | None = None
    url: str | None = None
    build_name: str | None = None
    build_url: str | None = None


def ci_job(env: Mapping[str, str] | None = None) -> CiJob:
    """Read the CI system's own variables; ``local`` when none is set."""
    e = os.environ if env is None else env
    if e.get("GITLAB_CI"):
        return CiJob("gitlab", e.get("CI_JOB_NAME"), e.get("CI_JOB_URL"),
                     f"pipeline {e['CI_PIPELINE_ID']}" if e.get("CI_PIPELINE_ID") else None,
                     e.get("CI_PIPELINE_URL"))
    if e.get("GITHUB_ACTIONS"):
        run_url = None
        if e.get("GITHUB_SERVER_URL") and e.get("GITHUB_REPOSITORY") and e.get("GITHUB_RUN_ID"):
            run_url = f"{e['GITHUB_SERVER_URL']}/{e['GITHUB_REPOSITORY']}/actions/runs/{e['GITHUB_RUN_ID']}"
        return CiJob("github", e.get("GITHUB_JOB") or e.get("GITHUB_WORKFLOW"), run_url,
                     f"run {e['GITHUB_RUN_NUMBER']}" if e.get("GITHUB_RUN_NUMBER") else None, run_url)
    if e.get("JENKINS_URL") or e.get("BUILD_URL"):
        return CiJob("jenkins", e.get("JOB_NAME"), e.get("BUILD_URL"),
                     f"#{e['BUILD_NUMBER']}" if e.get("BUILD_NUMBER") else None, e.get("BUILD_URL"))
    return CiJob("local")
