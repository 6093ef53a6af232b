"""The plan's summary and review view (shots with their keyframe prompts, the dialogue timeline
per character, the render profile), and the inline edit's validation, as HTML for the panel."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from sparkle_motion_dagster.film.plan import PlanValidationError, parse_plan_document, summarize


def check_edit(text: str) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """The edited plan text as a document and its problems (``[{"field", "problem"}]``, empty
    when it is a valid MoviePlan or plan artifact)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [{"field": "(json)", "problem": f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                                     f"column {exc.colno}"}]
    try:
        parse_plan_document(document)
    except PlanValidationError as exc:
        return document, [{"field": issue.path or "(plan)", "problem": issue.reason} for issue in exc.issues]
    except ValueError as exc:
        return document, [{"field": "(plan)", "problem": str(exc)}]
    return document, []


def problems_html(problems: list[dict[str, str]]) -> str:
    rows = "".join(f"<li><code>{escape(p['field'])}</code>: {escape(p['problem'])}</li>" for p in problems)
    return (f'<div class="sm-plan-errors" style="color:#b00020"><b>The edited plan is refused '
            f'({len(problems)} problem{"s" * (len(problems) != 1)}); nothing was sent:</b><ul>{rows}</ul></div>')


def summary_html(document: dict[str, Any]) -> str:
    """The counts the seed shows as soon as a plan is parsed."""
    summary = summarize(parse_plan_document(document).plan)
    return (f'<div class="sm-plan-summary"><b>{escape(summary["title"])}</b> · plan_id <code>{summary["plan_id"]}</code>'
            f' · {summary["shots"]} shots · {summary["base_images"]} base images · '
            f'{summary["dialogue_lines"]} dialogue entries ({summary["timeline_entries"]} timeline entries) · '
            f'{summary["runtime_sec"]:g} s at {summary["fps"]:g} fps · video model '
            f'<code>{escape(summary["video_model_id"])}</code></div>')


def review_html(document: dict[str, Any]) -> str:
    plan = parse_plan_document(document).plan
    prompts = {image.id: image.prompt for image in plan.base_images}
    shots = "".join(
        f"<tr data-shot='{escape(s.id)}'><td>{escape(s.id)}</td><td>{s.duration_sec:g} s</td>"
        f"<td>{escape(s.visual_description or s.setting)}</td>"
        f"<td><code>{escape(s.start_base_image_id)}</code>: {escape(prompts.get(s.start_base_image_id, ''))}</td>"
        f"<td><code>{escape(s.end_base_image_id)}</code>: {escape(prompts.get(s.end_base_image_id, ''))}</td>"
        f"<td>{escape(s.motion_prompt)}</td></tr>" for s in plan.shots)
    names = {c.id: c.name for c in plan.characters}
    per_character: dict[str, list[str]] = {}
    for entry in plan.dialogue_timeline:
        if getattr(entry, "type", "") == "dialogue":
            per_character.setdefault(entry.character_id, []).append(
                f"{entry.start_time_sec:g}–{entry.start_time_sec + entry.duration_sec:g} s: “{escape(entry.text)}”")
    dialogue = "".join(f"<li><b>{escape(names.get(cid, cid))}</b><ul>{''.join(f'<li>{line}</li>' for line in lines)}"
                       f"</ul></li>" for cid, lines in per_character.items()) or "<li>no dialogue</li>"
    profile = escape(json.dumps(plan.render_profile.model_dump(mode="json", exclude_none=True)))
    return (f'<div class="sm-plan-review"><h4>Shots</h4><table class="sm-shots"><tr><th>shot</th><th>duration</th>'
            f"<th>description</th><th>start keyframe</th><th>end keyframe</th><th>motion</th></tr>{shots}</table>"
            f"<h4>Dialogue timeline</h4><ul>{dialogue}</ul><h4>Render profile</h4><code>{profile}</code></div>")


def report_html(report: dict[str, Any]) -> str:
    """The plan intake's report before paying for a render: every warning with its field path (an
    overrun with its speech length, window and what will happen) and the estimated cost per stage."""
    warnings = report.get("warnings") or []
    items = "".join(f"<li><code>{escape(w.get('field', ''))}</code> <i>{escape(w.get('kind', ''))}</i>: "
                    f"{escape(w.get('message', ''))}</li>" for w in warnings)
    parts = [f"<div class='sm-warnings'><b>Warnings</b>: <ul>{items}</ul></div>" if warnings
             else "<div class='sm-warnings'><b>Warnings</b>: none</div>"]
    estimate = report.get("estimate")
    if estimate:
        rows = "".join(
            f"<tr><td>{escape(stage)}</td><td>{escape(str(f.get('backend') or ''))}</td>"
            f"<td>{'?' if f.get('seconds') is None else format(f['seconds'], '.1f') + ' s'}</td>"
            f"<td>{_gigabytes(f.get('peak_memory_bytes'))}</td><td>{escape(f.get('basis', ''))}</td></tr>"
            for stage, f in estimate.get("stages", {}).items())
        total = estimate.get("total_seconds")
        parts.append(f"<div class='sm-estimate'><b>Estimate</b>: "
                     f"{'unknown' if total is None else format(total, '.1f') + ' s'}, peak memory "
                     f"{_gigabytes(estimate.get('peak_memory_bytes'))}<table class='sm-estimate'><tr><th>stage</th>"
                     f"<th>backend</th><th>time</th><th>peak memory</th><th>basis</th></tr>{rows}</table></div>")
    return f'<div class="sm-plan-report">{"".join(parts)}</div>'


def _gigabytes(value: int | None) -> str:
    return "?" if not value else f"{value / 1e9:.2f} GB"
