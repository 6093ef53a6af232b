"""Plan intake: the checks that run before any rendering is paid for."""

from __future__ import annotations

from typing import Any

from sparkle_motion_dagster.film.levers import accepted, refused_levers
from sparkle_motion_dagster.film.plan import MoviePlan, summarize
from sparkle_motion_dagster.film.speech_fit import FitPolicy, LineSpeech, overrun_warning

# How to configure the real backends users declare in render_profile.video.model_id.
MODEL_HINTS = {
    "wan-2.1": "set VIDEOS_WAN_MODEL to a Wan 2.1 image-to-video model (folder or Hugging Face repo id)",
    "wan-2.1-i2v-480p": "set VIDEOS_WAN_MODEL to a Wan 2.1 I2V model, e.g. Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    "wan-2.1-flf2v-720p": "set VIDEOS_WAN_MODEL to Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers (or a copy)",
    "wan-2.2-i2v-a14b": "set VIDEOS_WAN_MODEL to Wan-AI/Wan2.2-I2V-A14B-Diffusers (or a copy)",
    "wan-2.2-ti2v-5b": "set VIDEOS_WAN_MODEL to Wan-AI/Wan2.2-TI2V-5B-Diffusers (or a copy)",
}


# How a person asks for the animatic in place of an unconfigured model, on the command line; other
# surfaces say it in their own terms (the drop folder: ``lifecycle/inbox.py``).
PREVIEW_FIX_CLI = "run with --preview"


class ModelNotConfiguredError(ValueError):
    """The plan declares a video model that no configured backend serves."""


class LeverNotTakenError(ValueError):
    """The plan sets a lever (render_profile.video.loras, ...) its video backend cannot take."""


def resolve_video_backend(plan: MoviePlan, *, served: tuple[str, ...], backend: str, preview: bool) -> dict[str, Any]:
    """Honour render_profile.video.model_id, or substitute the animatic when previewing."""
    declared = plan.render_profile.video.model_id
    profile = plan.render_profile.video.model_dump(exclude_none=True)
    if declared in served:
        refused = refused_levers(profile, backend)
        if refused:
            raise LeverNotTakenError(
                f"render_profile.video.{refused[0]}: the {backend} video backend cannot take "
                f"{', '.join(refused)} (it takes {', '.join(sorted(accepted(backend) or ())) or 'no levers'}). "
                "Remove them from render_profile.video, or declare a model that takes them.")
        return {"declared_model_id": declared, "video_backend": backend, "substituted": False}
    if preview:
        ignored = refused_levers(profile, backend)
        return {"declared_model_id": declared, "video_backend": backend, "substituted": True,
                "substitution": f"previewing: {backend} renders in place of {declared}"
                                + (f" (ignoring {', '.join(ignored)})" if ignored else ""),
                **({"ignored_levers": ignored} if ignored else {})}
    hint = MODEL_HINTS.get(declared, f"configure a video backend that serves {declared!r}")
    raise ModelNotConfiguredError(
        f"render_profile.video.model_id: {declared!r} is not served by the configured video backend "
        f"{backend!r} (serves {', '.join(served)}). To render it, {hint}; or {PREVIEW_FIX_CLI} "
        f"to render the {backend} instead and record the substitution."
    )


def warning(field: str, kind: str, message: str, **details: Any) -> dict[str, Any]:
    """One dry-run warning: the field it is about, its kind, what a person reads, and its figures."""
    return {"field": field, "kind": kind, "message": message, **details}


def validation_report(
    plan: MoviePlan, backend_choice: dict[str, Any], *, max_line_chars: int | None = None,
    max_generation_sec: float | None = None, speech: list[LineSpeech] | None = None,
    policy: FitPolicy | None = None,
) -> dict[str, Any]:
    """The summary a user reads before paying for a render: counts, the chosen backend and warnings.

    Each warning is a dict (:func:`warning`). ``speech`` (each line's measured or estimated
    length) adds an ``overrun`` warning for every line longer than its window, saying what the
    stitcher will do under ``policy`` (``speech_s``, ``window_s``, ``tempo``, ``lost_s``)."""
    warnings = []
    if backend_choice.get("problem"):
        warnings.append(warning("render_profile.video.model_id", "video_model", backend_choice["problem"]))
    for index, shot in enumerate(plan.shots):
        start, end = plan.base_image(shot.start_base_image_id), plan.base_image(shot.end_base_image_id)
        if start.prompt.strip() == end.prompt.strip():
            warnings.append(warning(f"shots[{index}]", "identical_keyframes",
                                    f"shots[{index}] ({shot.id}): start and end keyframe prompts are identical; "
                                    "the clip will be static"))
        if shot.is_talking_closeup and not (start.characters or end.characters):
            warnings.append(warning(f"shots[{index}].is_talking_closeup", "closeup_without_character",
                                    f"shots[{index}] ({shot.id}) is a talking close-up, but neither of its keyframes "
                                    f"({start.id}, {end.id}) has a character: name who is in them "
                                    "(base_images[].characters) so they are drawn from the character's reference"))
        if max_generation_sec and shot.duration_sec > max_generation_sec:
            warnings.append(warning(f"shots[{index}].duration_sec", "shot_too_long",
                                    f"shots[{index}] ({shot.id}): {shot.duration_sec:g} s is longer than one video "
                                    f"generation ({max_generation_sec:g} s); it will be made of chained segments"))
    fields = {line.window.line_id: line.window.field for line in speech or []}
    if max_line_chars:
        for line_id, entry in plan.dialogue_lines():
            if len(entry.text) > max_line_chars:
                field = f"{fields[line_id]}.text" if line_id in fields else line_id
                warnings.append(warning(field, "line_too_long",
                                        f"{line_id} ({entry.character_id}): {len(entry.text)} characters is longer "
                                        f"than the speech engine's {max_line_chars}; it will be spoken in chunks"))
    for line in speech or []:
        overrun = overrun_warning(line, policy or FitPolicy())
        if overrun:
            warnings.append(overrun)
    return {"summary": summarize(plan), "video": backend_choice, "warnings": warnings}
