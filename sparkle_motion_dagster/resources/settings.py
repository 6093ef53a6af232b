"""Adapters configured from the environment, each setting declared once, on its field.

A field the environment may set names its variable, and its checks are pydantic
constraints (``ge``/``le``/``gt``/``pattern``, a ``Literal`` type, or a field
validator for a rule those cannot say)::

    class SdxlKeyframes(EnvConfigured, KeyframeRenderer):
        switch: ClassVar[str] = "model"
        model: str = env_field("IMAGES_SDXL_MODEL", pattern=NOT_BLANK, expected="must not be empty")
        steps: int = env_field("IMAGES_SDXL_STEPS", 30, ge=1)

:class:`EnvConfigured` gives every such class:

* ``from_env(environ)``: the resource the variables describe, or None when the
  variable of the class's ``switch`` field (the model, checkpoint or interpreter
  that turns the adapter on) is unset or blank. Values are stripped and blank ones
  skipped, except on ``verbatim`` fields (a negative prompt), which are taken as
  written; pydantic parses the text (``"4"`` -> 4, ``"yes"`` -> True). A
  ``secret`` field read from the process environment is kept as a ``dg.EnvVar``
  reference, so the Dagster UI shows the variable's name, never the value;
* construction that fails with :class:`SettingsError` (a ``ValueError``) listing
  every bad value at once, each with its variable, field, value and reason:
  ``IMAGES_SDXL_STEPS (SdxlKeyframes.steps) = 'many': expected an integer``;
* ``validate_settings()``: the same checks on the current values (after a
  ``model_copy``, which skips validation);
* ``where(field)``: the words that name a setting in other errors
  (``"IMAGES_SDXL_DEVICE (SdxlKeyframes.device)"``).

Nothing here imports a model library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import dagster as dg
from pydantic import Field, ValidationError
from pydantic_core import PydanticUndefined

from sparkle_motion_dagster.resources.model_support import DEVICE_CHOICES

NOT_BLANK = r"\S"  # a pattern: at least one character that is not white space
DEVICE = r"^(?i:auto|cpu|cuda(:\d+)?)$"  # a device setting (model_support.resolve_device reads it)
__all__ = ["DEVICE", "DEVICE_CHOICES", "NOT_BLANK", "EnvConfigured", "SettingProblem", "SettingsError", "env_field",
           "env_values", "problems_from"]


def env_field(variable: str, default: Any = PydanticUndefined, *, expected: str | None = None,
              verbatim: bool = False, secret: bool = False, **constraints: Any) -> Any:
    """A resource field set by the environment variable ``variable``.

    ``constraints`` are pydantic's (``ge=1``, ``pattern=...``); ``expected`` replaces
    pydantic's words for a pattern mismatch (``"expected auto, cuda, cuda:N or cpu"``).
    """
    extra: dict[str, Any] = {"env": variable}
    if expected:
        extra["expected"] = expected
    if verbatim:
        extra["verbatim"] = True
    if secret:
        extra["secret"] = True
    return Field(default, json_schema_extra=extra, **constraints)


@dataclass(frozen=True)
class SettingProblem:
    """One bad setting: the variable (None for a field no variable sets), the field, the value and why."""

    resource: str
    field: str
    variable: str | None
    value: Any
    reason: str

    def __str__(self) -> str:
        if not self.field:
            where = self.variable or self.resource
        elif self.variable:
            where = f"{self.variable} ({self.resource}.{self.field})"
        else:
            where = f"{self.resource}.{self.field}"
        shown = "" if self.value is PydanticUndefined else f" = {self.value!r}"
        return f"{where}{shown}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        value = None if self.value is PydanticUndefined else self.value
        return {"variable": self.variable, "setting": f"{self.resource}.{self.field}" if self.field else self.resource,
                "value": value if isinstance(value, (str, int, float, bool, type(None))) else repr(value),
                "reason": self.reason, "message": str(self)}


class SettingsError(ValueError):
    """Settings of one adapter that cannot work; ``problems`` has every one of them."""

    def __init__(self, problems: list[SettingProblem]):
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def _extra(cls: type, field: str) -> dict[str, Any]:
    info = cls.model_fields.get(field)
    extra = info.json_schema_extra if info is not None else None
    return extra if isinstance(extra, dict) else {}


# pydantic's error types -> the reason a person reads (the field's own ``expected`` wins for patterns).
_REASONS = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected 1/0, true/false, yes/no or on/off",
    "bool_type": "expected 1/0, true/false, yes/no or on/off",
    "string_type": "expected text",
    "missing": "must be set",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "literal_error": "expected {expected}",
    "string_pattern_mismatch": "does not match {pattern}",
}


def _reason(cls: type, field: str, error: Mapping[str, Any]) -> str:
    kind, context = error["type"], error.get("ctx") or {}
    if kind == "value_error" and "error" in context:
        return str(context["error"])
    if kind == "string_pattern_mismatch" and _extra(cls, field).get("expected"):
        return _extra(cls, field)["expected"]
    template = _REASONS.get(kind)
    if template is None:
        return error["msg"]
    # 2.0 reads as 2: the bound as the person wrote it, not as the field's type holds it
    shown = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in context.items()}
    try:
        return template.format(**shown)
    except (KeyError, IndexError):
        return error["msg"]


def problems_from(cls: type, error: ValidationError) -> list[SettingProblem]:
    """Every problem of a pydantic ``ValidationError`` raised while building ``cls``."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        value = item.get("input", PydanticUndefined) if field else PydanticUndefined
        if isinstance(value, Mapping) or item["type"] == "missing" or _extra(cls, field).get("secret"):
            value = PydanticUndefined  # not shown: absent, the whole input, or a secret
        problems.append(SettingProblem(cls.__name__, field, _extra(cls, field).get("env") if field else None,
                                       value, _reason(cls, field, item)))
    return problems


def env_values(cls: type, environ: Mapping[str, str], *, references: bool = False) -> dict[str, Any]:
    """The fields of ``cls`` that ``environ`` sets, as text (see the module docstring).

    With ``references``, a ``secret`` field becomes a ``dg.EnvVar`` naming its variable.
    """
    values: dict[str, Any] = {}
    for name in cls.model_fields:
        extra = _extra(cls, name)
        variable = extra.get("env")
        raw = environ.get(variable) if variable else None
        if raw is None:
            continue
        if not extra.get("verbatim"):
            raw = raw.strip()
            if not raw:
                continue
        values[name] = dg.EnvVar(variable) if references and extra.get("secret") else raw
    return values


class EnvConfigured(dg.ConfigurableResource):
    """Base of the adapters the environment configures (see the module docstring).

    ``switch`` names the field whose variable turns the adapter on.
    """

    switch: ClassVar[str] = "model"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise SettingsError(problems_from(type(self), error)) from None

    @classmethod
    def variable(cls, field: str) -> str | None:
        """The environment variable that sets ``field``, if one does."""
        return _extra(cls, field).get("env")

    @classmethod
    def where(cls, field: str) -> str:
        """The words naming a setting in an error: ``"IMAGES_SDXL_DEVICE (SdxlKeyframes.device)"``."""
        variable = cls.variable(field)
        return f"{variable} ({cls.__name__}.{field})" if variable else f"{cls.__name__}.{field}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self | None:
        """The resource the environment (``os.environ`` when None) describes, or None when the
        ``switch`` variable is unset or blank. Raises :class:`SettingsError` naming every bad variable."""
        env = os.environ if environ is None else environ
        values = env_values(cls, env, references=environ is None)
        if not str(values.get(cls.switch, "")).strip():
            return None
        return cls(**values)

    def validate_settings(self) -> None:
        """Check the current values again (no file access beyond what a field's own check does)."""
        type(self)(**self.model_dump())

    def switch_value(self) -> str:
        """The value that turned the adapter on (its model, checkpoint or interpreter)."""
        return str(getattr(self, self.switch, ""))

    def describe(self, *, probe: bool = True) -> dict[str, Any]:
        """The doctor's entry: settings checked and the model located (``runtime()``), nothing loaded."""
        entry: dict[str, Any] = {"backend": self.backend, "why": f"{self.variable(self.switch)}={self.switch_value()}",
                                 "model": self.switch_value()}
        if not probe:
            return {**entry, "ok": True}
        try:
            runtime = self.runtime()
        except Exception as error:  # noqa: BLE001 - the doctor reports every problem
            return {**entry, "ok": False, "problem": str(error)}
        plain = {k: v for k, v in runtime.items() if isinstance(v, (str, int, float, bool))}
        entry = {**entry, "ok": True, **plain}
        source = runtime.get("source") or runtime.get("checkpoint")
        if source:
            from sparkle_motion_dagster.resources.model_support import weights_status

            entry.update(weights_status(str(source)))
            offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
            if not entry["weights_found"] and (offline or os.path.exists(str(source))):
                entry.update(ok=False, problem=f"weights not found: {entry['weights']}")
            elif not entry["weights_found"]:
                entry["weights"] += "; without HF_HUB_OFFLINE it is downloaded on first use"
        return entry

    def runtime(self) -> dict[str, Any]:
        """The resolved model source and device (adapters override); raises what would stop a render."""
        self.validate_settings()
        return {}

    def required_packages(self) -> tuple[str, ...]:
        """The modules (import names) this adapter cannot run without in this environment."""
        return ()
