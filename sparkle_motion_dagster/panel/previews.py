"""HTML for the panel's stage table and per-stage previews. Media play from URLs (the artifact
service with HTTP ranges, signed links when it has a token): no file goes through the widget
channel."""

from __future__ import annotations

from html import escape
from typing import Any, Callable

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.panel.wording import in_panel_words

STATUS_COLOURS = {"succeeded": "#1b7f3b", "running": "#1a5fb4", "failed": "#b00020", "stopped": "#b00020",
                  "pending": "#777", "paused": "#a36a00", "held": "#a36a00"}
# Preview tabs: (tab title, stage folder), from the stage table.
TABS = stages.preview_tabs()
# The dialogue stage's stitched track: the film's dialogue timeline, as long as the film.
TIMELINE_TYPE = "tts_timeline_audio"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def stage_badges(section: dict[str, Any] | None) -> str:
    """The seed's badges for a stage's files, e.g. ``2 videos · 6 s``. The dialogue stage's audio
    reads as its lines and the film's timeline length (``3 dialogue lines · 25 s timeline``): the
    stitched timeline is the film's length, and its lines are inside it, not added to it."""
    if not section:
        return ""
    badges = []
    for media, summary in sorted(section.get("media_summary", {}).items()):
        word = {"audio": "audio clip", "video": "video", "image": "image"}.get(media)
        if not word:
            continue
        timeline = _timeline_row(section) if media == "audio" else None
        if timeline is not None:
            lines = summary["count"] - 1
            text = _plural(lines, "dialogue line")
            if timeline.get("duration_s"):
                text += f" · {timeline['duration_s']:.0f} s timeline"
            badges.append(text)
            continue
        text = _plural(summary["count"], word)
        if summary.get("total_duration_s"):
            text += f" · {summary['total_duration_s']:.0f} s"
        badges.append(text)
    return ", ".join(badges)


def _timeline_row(section: dict[str, Any]) -> dict[str, Any] | None:
    """The dialogue stage's stitched timeline (as long as the film), when the section lists it."""
    return next((row for row in section.get("artifacts") or [] if row.get("artifact_type") == TIMELINE_TYPE), None)


def _time(value: str | None) -> str:
    return value[11:19] if value else ""


def checks_cell(checks: list[dict[str, Any]]) -> str:
    """A stage's automated checks: passed, or what failed (a warning, or an error while checks block)."""
    if not checks:
        return ""
    failed = [c for c in checks if not c["passed"]]
    if not failed:
        return '<span class="sm-checks" data-checks="passed" style="color:#2e7d32">checks passed</span>'
    colour = "#c62828" if any(c["severity"] == "ERROR" for c in failed) else "#b26a00"
    text = "; ".join(f"{c['name']}: {c['description']}" for c in failed)
    return f'<span class="sm-checks" data-checks="failed" style="color:{colour}">{escape(text)}</span>'


def held_cell(stage: dict[str, Any]) -> str:
    """How long a stage waited at a pause, apart from its own time: ``since 12:08:43`` while it
    holds, ``4.5 s`` once it started after the resume (its wall time is that plus its duration)."""
    if stage["status"] == "held":
        return f"since {_time(stage.get('held_since'))}" if stage.get("held_since") else "holding"
    return f"{stage['held_s']:.1f} s" if stage.get("held_s") else ""


def stage_table_html(status: dict[str, Any], sections: dict[str, dict[str, Any]]) -> str:
    """One row per stage: its status, its own start, end and duration, the time it held at a
    pause, its files' badges and its checks. A held stage has no files' badge yet."""
    rows = []
    for stage in status.get("stages", []):
        colour = STATUS_COLOURS.get(stage["status"], "#333")
        duration = f"{stage['duration_s']:.1f} s" if stage.get("duration_s") is not None else ""
        badges = "" if stage["status"] in ("held", "pending") else stage_badges(sections.get(stage["name"]))
        rows.append(
            f'<tr class="sm-stage" data-stage="{escape(stage["asset"])}" data-status="{escape(stage["status"])}">'
            f'<td>{escape(stage["name"])}</td><td style="color:{colour}"><b>{escape(stage["status"])}</b></td>'
            f"<td>{_time(stage.get('started_at'))}</td><td>{_time(stage.get('completed_at'))}</td><td>{duration}</td>"
            f"<td class='sm-held'>{held_cell(stage)}</td><td>{escape(badges)}</td>"
            f"<td>{checks_cell(stage.get('checks') or [])}</td></tr>")
    return ('<table class="sm-stage-table"><tr><th>stage</th><th>status</th><th>start</th><th>end</th>'
            "<th>duration</th><th title='time it waited at a pause before it started'>held</th>"
            f"<th>badges</th><th>checks</th></tr>{''.join(rows)}</table>")


def log_html(status: dict[str, Any]) -> str:
    """The last log lines; a command a panel button replaces is said as that button."""
    lines = [f"{_time(line['timestamp'])} {line.get('stage') or '':<16} {in_panel_words(line['message'])}"
             for line in status.get("log", [])]
    return f'<pre class="sm-log" style="max-height:12em;overflow:auto">{escape(chr(10).join(lines))}</pre>'


def banner_html(status: dict[str, Any]) -> str:
    """The film's state in a line, in the panel's words; the red failure banner only when a stage
    failed or a person stopped the film."""
    state = status.get("status", "")
    detail = in_panel_words(status.get("detail") or "")
    if state in ("failed", "stopped"):
        return (f'<div class="sm-banner sm-banner-{state}" style="background:#b00020;color:white;padding:6px">'
                f"<b>{escape(status['run_id'])} {escape(state)}</b>: {escape(detail)}. "
                "Choose a stage and <i>Resume from stage</i>: finished work is reused.</div>")
    text = f"{status.get('run_id', '')}: {state} — {detail}"
    return f'<div class="sm-banner sm-banner-{escape(state)}">{escape(text)}</div>'


def media_html(row: dict[str, Any], url: str, *, width: int = 320) -> str:
    label = escape(row.get("metadata", {}).get("label") or row["local_path"].rsplit("/", 1)[-1])
    media = row["media_type"]
    src = escape(url, quote=True)
    if media == "image":
        player = f'<img src="{src}" width="{width // 2}" alt="{label}">'
    elif media == "audio":
        player = f'<audio controls preload="metadata" src="{src}"></audio>'
    elif media == "video":
        player = f'<video controls preload="metadata" width="{width}" src="{src}" type="video/mp4"></video>'
    else:
        return ""
    duration = f" · {row['duration_s']:.1f} s" if row.get("duration_s") else ""
    return (f'<figure class="sm-media sm-{media}" data-type="{escape(row["artifact_type"])}" '
            f'style="display:inline-block;margin:4px">{player}<figcaption>{label}{duration}</figcaption></figure>')


def stage_preview_html(section: dict[str, Any] | None, url_of: Callable[[dict[str, Any]], str | None]) -> str:
    if not section:
        return "<i>nothing yet</i>"
    parts = [f'<div class="sm-badges">{escape(stage_badges(section))}</div>']
    for row in section["artifacts"]:
        url = url_of(row)
        if url and row["media_type"] in ("image", "audio", "video"):
            parts.append(media_html(row, url))
    return "".join(parts)


def final_summary_html(status: dict[str, Any], row: dict[str, Any] | None, review: str) -> str:
    """The final deliverable in a line: the film's title, length and size, and where its review
    stands (``review`` from :func:`wording.review_line`); what is missing when there is none yet."""
    title = escape(status.get("title") or status.get("run_id") or "")
    if row is None:
        return f'<div class="sm-final-summary" data-final="none"><b>{title}</b>: no final video yet</div>'
    facts = [f"{row['duration_s']:.1f} s" if row.get("duration_s") else None,
             f"{(row.get('size_bytes') or 0) / 1e6:.1f} MB",
             f"sha256 {row['sha256'][:12]}…" if row.get("sha256") else None]
    shown = " · ".join(f for f in facts if f)
    return (f'<div class="sm-final-summary" data-final="ready"><b>{title}</b> · video_final.mp4 · {escape(shown)}'
            f' · <span class="sm-review-state">{escape(review)}</span></div>')
