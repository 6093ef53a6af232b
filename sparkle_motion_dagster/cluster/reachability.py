"""What the doctor says about the cluster: the executor, whether the broker and Postgres answer,
and which Celery workers answer a ping. Each probe waits a second or two at most."""

from __future__ import annotations

from typing import Any

from sparkle_motion_dagster.cluster.settings import ClusterSettings, redact

PROBE_SECONDS = 2.0


def _broker(url: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": redact(url)}
    if not url.startswith(("redis://", "rediss://")):
        return {**entry, "reachable": None, "note": "only a Redis broker is probed"}
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=PROBE_SECONDS, socket_timeout=PROBE_SECONDS).ping()
    except Exception as error:  # noqa: BLE001 - the doctor reports what it found
        return {**entry, "reachable": False, "problem": f"{type(error).__name__}: {error}"}
    return {**entry, "reachable": True}


def _postgres(url: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": redact(url)}
    try:
        import psycopg2

        psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://", 1),
                         connect_timeout=int(PROBE_SECONDS)).close()
    except Exception as error:  # noqa: BLE001
        return {**entry, "reachable": False, "problem": f"{type(error).__name__}: {str(error).strip()}"}
    return {**entry, "reachable": True}


def _workers(settings: ClusterSettings) -> list[str] | None:
    """The names of the workers that answer a ping on the broker (None when it cannot be asked)."""
    try:
        from sparkle_motion_dagster.cluster.worker import celery_app

        replies = celery_app(settings).control.inspect(timeout=PROBE_SECONDS).ping() or {}
    except Exception:  # noqa: BLE001 - the broker's own entry says why
        return None
    return sorted(replies)


def cluster_report(problems: list[dict[str, Any]], problem) -> dict[str, Any]:
    """The doctor's ``cluster`` entry; bad settings and unreachable services go into ``problems``."""
    from sparkle_motion_dagster.resources.settings import SettingsError

    try:
        settings = ClusterSettings.from_env()
    except SettingsError as error:
        for found in error.problems:
            problems.append(problem("setting", stage="cluster", **found.as_dict()))
        return {"executor": None, "ok": False}
    report: dict[str, Any] = {"executor": settings.executor, "shots_per_step": settings.shots_per_step}
    if settings.broker:
        report["broker"] = _broker(settings.broker)
        if report["broker"]["reachable"] is False:
            problems.append(problem("service", f"cluster: the Celery broker {report['broker']['url']} does not answer: "
                                               f"{report['broker']['problem']}", service="broker"))
        elif settings.executor == "celery":
            report["workers"] = _workers(settings)
            if report["workers"] == []:
                problems.append(problem("service", "cluster: no Celery worker answers; start one per GPU with "
                                                   "`sparkle-motion worker --queues gpu --gpu N` and one with "
                                                   "`--queues cpu`", service="workers"))
    if settings.postgres_url:
        report["postgres"] = _postgres(settings.postgres_url)
        if not report["postgres"]["reachable"]:
            problems.append(problem("service", f"cluster: Postgres {report['postgres']['url']} does not answer: "
                                               f"{report['postgres']['problem']}", service="postgres"))
    return report
