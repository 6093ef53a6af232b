"""The panel's own words for what the services say.

The artifact service, the status payload and the review state speak to every surface, so their
messages name command-line commands and flags (``sparkle-motion control resume run_…``,
``--reviewer``). In the panel a button or a box does the same job: :func:`in_panel_words` says
the button or box instead, and :func:`review_line` says where the review stands.
"""

from __future__ import annotations

import re
from typing import Any

_RUN_ID = r"run_[0-9A-Za-z_-]+"
_REVIEW_DECISIONS = "Approve, Reject or Skip below, with your name in the Reviewer box"

# (what the services say, what the panel says instead), tried in order.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern), replacement) for pattern, replacement in (
    (r"^artifact service answered 4\d\d: ", ""),  # the refusal itself is what a person needs
    (rf"`?sparkle-motion run --run-id {_RUN_ID}`?", "the Run Production button"),
    (rf"`?sparkle-motion control resume {_RUN_ID}`?", "the Resume button"),
    (rf"`?sparkle-motion control stop {_RUN_ID}`?", "the Stop button"),
    (rf"`?sparkle-motion resume {_RUN_ID}`?", "the Resume from stage button"),
    (rf"\(sparkle-motion review {_RUN_ID} --approve\|--reject\|--skip --reviewer NAME\)", f"({_REVIEW_DECISIONS})"),
    (rf"\(sparkle-motion review {_RUN_ID} --approve --reviewer NAME\)", "(Approve below, with your name in the "
                                                                         "Reviewer box)"),
    (r"\(e\.g\. --reviewer '[^']*'\)", "(type your name in the Reviewer box)"),
    (r"^reviewer: ", "Reviewer box: "),
    (r"^seed: ", "Seed box: "),
    (r"^shot_id: ", "Shot list: "),
    (r"^run_id: ", "Run ID box: "),
))


def in_panel_words(message: str) -> str:
    """``message`` with each command-line command or flag a panel control replaces said as that
    control, e.g. ``reviewer: ... (e.g. --reviewer 'Ava K.')`` -> ``Reviewer box: ... (type your
    name in the Reviewer box)``. Anything else is left as it was said."""
    for pattern, replacement in _PHRASES:
        message = pattern.sub(replacement, message)
    return message


def unreachable(service: str, url: str) -> str:
    """What the panel says when a service does not answer at all."""
    return f"the {service} at {url} does not answer; is it running? (Check services says which answer)"


def review_line(review: dict[str, Any] | None) -> str:
    """Where the review stands: ``approved by Ava at 12:10:31``; a pending review names nobody."""
    if not review:
        return "review: nothing to review yet"
    status, reviewer = review.get("status") or "pending", review.get("reviewer")
    when = f" at {str(review.get('reviewed_at'))[11:19]}" if review.get("reviewed_at") else ""
    if status == "pending":
        if review.get("stale_review") and reviewer:
            return f"review: pending (the final video changed after {reviewer}'s review{when})"
        return "review: pending"
    line = f"review: {status} by {reviewer}{when}" if reviewer else f"review: {status}"
    return line + (" · ready to share" if review.get("ready_to_share") else "")
