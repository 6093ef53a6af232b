"""The cluster's settings, each read from its environment variable and checked once.

``SPARKLE_EXECUTOR`` chooses how a film's steps run: ``in_process`` (the default: one
process per film run, its steps one at a time), ``multiprocess`` (a process per step on this
machine) or ``celery`` (each step is a Celery task on the workers listening on its queue:
``gpu`` or ``cpu``). ``SPARKLE_CELERY_BROKER`` is the broker Celery uses (and, unless
``SPARKLE_CELERY_BACKEND`` says otherwise, its result backend); ``SPARKLE_POSTGRES_URL``
puts the Dagster instance (runs, events, schedules) in Postgres. Dagster-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from sparkle_motion_dagster.resources.settings import (
    SettingProblem,
    SettingsError,
    env_field,
    env_values,
    problems_from,
)

EXECUTORS = ("in_process", "multiprocess", "celery")


class ClusterSettings(BaseModel):
    """Where a film's steps run and where the Dagster instance keeps its records."""

    executor: Literal["in_process", "multiprocess", "celery"] = env_field("SPARKLE_EXECUTOR", "in_process")
    broker: str = env_field("SPARKLE_CELERY_BROKER", "",
                            pattern=r"^$|^(redis|rediss|amqp|pyamqp|memory)://",
                            expected="expected a broker URL such as redis://HOST:6379/0")
    backend: str = env_field("SPARKLE_CELERY_BACKEND", "", pattern=r"^$|^(redis|rediss|rpc)://",
                             expected="expected a result backend URL such as redis://HOST:6379/1")
    # dagster-postgres speaks psycopg2; SQLAlchemy 2.1 takes psycopg 3 for a bare postgresql://.
    postgres_url: str = env_field("SPARKLE_POSTGRES_URL", "", pattern=r"^$|^postgresql\+psycopg2://",
                                  expected="expected postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE "
                                           "(dagster-postgres needs the psycopg2 driver named in the URL)")
    redeliver_seconds: int = env_field("SPARKLE_CELERY_REDELIVER_S", 3600, ge=5)
    """How long a task whose worker died waits before another worker gets it (longer than any step)."""
    shots_per_step: int = env_field("SPARKLE_SHOTS_PER_STEP", 1, ge=1)
    """Under ``multiprocess`` and ``celery``: how many shots one keyframe or clip step renders (in
    process one step renders them all)."""

    def __init__(self, **data) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise SettingsError(problems_from(type(self), error)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClusterSettings:
        """The settings the environment (``os.environ`` when None) describes; raises
        :class:`SettingsError` naming every bad variable."""
        values = env_values(cls, os.environ if environ is None else environ)
        settings = cls(**values)
        if settings.executor == "celery" and not settings.broker:
            raise SettingsError([SettingProblem(cls.__name__, "broker", "SPARKLE_CELERY_BROKER", PydanticUndefined,
                                                "must be set when SPARKLE_EXECUTOR=celery "
                                                "(e.g. redis://HOST:6379/0)")])
        return settings

    @property
    def result_backend(self) -> str:
        return self.backend or self.broker

    def storage_description(self, dagster_home: str) -> str:
        """What Dagster storage this box uses, without a password: the Postgres URL, or the
        SQLite home folder."""
        return redact(self.postgres_url) if self.postgres_url else f"sqlite:{dagster_home}"


def redact(url: str) -> str:
    """A URL without its password (to print, and to compare across boxes without storing it)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = (parts.username or "") + ":***"
    return urlunsplit((parts.scheme, f"{userinfo}@{netloc[1]}", parts.path, parts.query, parts.fragment))
