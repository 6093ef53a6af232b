"""Launching film runs through the Dagster webserver's GraphQL API, so that they run under
Dagster's daemon and run launcher, survive a kernel restart and show in the Dagster UI.

``DagsterGraphQLClient.submit_job_execution`` takes no asset selection, which "resume from
stage" and "regenerate one shot" need, so the ``launchRun`` mutation is sent as it is.
"""

from __future__ import annotations

from typing import Any

import requests

PARTITION_TAG = "dagster/partition"
SOURCE_TAG = "sparkle/source"
DONE = {"SUCCESS", "FAILURE", "CANCELED"}
ASSET_JOB = "__ASSET_JOB"
"""Dagster's job of every asset and check of a code location (what the UI runs a check in)."""

_LOCATIONS = """
query { repositoriesOrError { __typename ... on RepositoryConnection { nodes {
  name location { name } jobs { name } } } ... on PythonError { message } } }"""

_LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) { launchRun(executionParams: $executionParams) {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on PythonError { message }
  ... on InvalidSubsetError { message }
  ... on PipelineNotFoundError { message }
  ... on UnauthorizedError { message }
  ... on RunConflict { message }
  ... on InvalidStepError { invalidStepKey }
  ... on InvalidOutputError { stepKey invalidOutputName }
  ... on ConflictingExecutionParamsError { message }
  ... on PresetNotFoundError { message }
  ... on NoModeProvidedError { message }
} }"""

_RUN = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { runId status jobName } } }"""

_CHECKS = """
query Logs($runId: ID!) { logsForRun(runId: $runId) { __typename ... on EventConnection { events {
  __typename ... on AssetCheckEvaluationEvent { evaluation { success checkName } } } } } }"""


class LaunchError(RuntimeError):
    """Dagster refused to launch a run."""


class DagsterLauncher:
    def __init__(self, dagster_url: str, timeout_s: float = 30.0):
        self.url = dagster_url.rstrip("/") + "/graphql"
        self.timeout_s = timeout_s
        self._repository: dict[str, str] | None = None

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(self.url, json={"query": query, "variables": variables or {}}, timeout=self.timeout_s)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise LaunchError("; ".join(e.get("message", str(e)) for e in body["errors"]))
        return body["data"]

    def repository(self) -> dict[str, str]:
        """The code location that holds the ``film`` job (``dagster dev -w workspace.yaml`` names it
        ``sparkle_motion``; ``dagster dev -m ...`` names it after the module)."""
        if self._repository is None:
            found = self.query(_LOCATIONS)["repositoriesOrError"]
            if found["__typename"] != "RepositoryConnection":
                raise LaunchError(f"Dagster could not load its code: {found.get('message')}")
            for node in found["nodes"]:
                if any(job["name"] == "film" for job in node["jobs"]):
                    self._repository = {"repositoryLocationName": node["location"]["name"],
                                        "repositoryName": node["name"]}
                    break
            else:
                raise LaunchError("no code location of this Dagster webserver has the film job")
        return self._repository

    def launch(self, job: str, *, run_id: str | None = None, assets: list[str] | None = None,
               run_config: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> str:
        """Launch ``job`` (for the ``run_id`` partition, only ``assets`` when given); the Dagster run id."""
        selector: dict[str, Any] = {**self.repository(), "jobName": job}
        if assets is not None:
            selector["assetSelection"] = [{"path": [asset]} for asset in assets]
            selector["assetCheckSelection"] = []
        return self._launch(selector, job, run_id=run_id, run_config=run_config, tags=tags)

    def _launch(self, selector: dict[str, Any], what: str, *, run_id: str | None, run_config: dict[str, Any] | None,
                tags: dict[str, str] | None) -> str:
        all_tags = {SOURCE_TAG: "panel", **(tags or {}), **({PARTITION_TAG: run_id} if run_id else {})}
        params = {"selector": selector, "runConfigData": run_config or {},
                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in all_tags.items()]}}
        result = self.query(_LAUNCH, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            detail = result.get("message") or "; ".join(e["message"] for e in result.get("errors", [])) or result
            raise LaunchError(f"Dagster did not launch {what}: {result['__typename']}: {detail}")
        return result["run"]["runId"]

    def launch_checks(self, checks: list[dict[str, str]], *, run_id: str, tags: dict[str, str] | None = None) -> str:
        """Run these asset checks (``{"asset", "name"}``) alone for the ``run_id`` partition, in
        Dagster's job of every asset and check (as the UI's *Execute* of a check does); the Dagster
        run id."""
        selector: dict[str, Any] = {**self.repository(), "jobName": ASSET_JOB, "assetSelection": [],
                                    "assetCheckSelection": [{"assetKey": {"path": [c["asset"]]}, "name": c["name"]}
                                                            for c in checks]}
        return self._launch(selector, "the checks " + ", ".join(c["name"] for c in checks), run_id=run_id,
                            run_config=None, tags=tags)

    def run_status(self, dagster_run_id: str) -> str:
        found = self.query(_RUN, {"runId": dagster_run_id})["runOrError"]
        if found["__typename"] != "Run":
            raise LaunchError(f"Dagster has no run {dagster_run_id}")
        return found["status"]

    def check_results(self, dagster_run_id: str) -> dict[str, bool]:
        """The asset check evaluations of a run, ``{check name: passed}``."""
        logs = self.query(_CHECKS, {"runId": dagster_run_id})["logsForRun"]
        return {e["evaluation"]["checkName"]: e["evaluation"]["success"] for e in logs.get("events", [])
                if e["__typename"] == "AssetCheckEvaluationEvent"}
