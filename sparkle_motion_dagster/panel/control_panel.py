"""The notebook control panel: the seed's Colab control cell, as ipywidgets over Dagster's
GraphQL API (launching) and the artifact service (status, files, control, review).

Controls carry the seed's names and are attributes, so a script or a test drives the panel
the way a person does (``panel.generate_plan.click()``). A button's work runs as an asyncio
task on the kernel's loop (widget updates from threads do not render in Colab); without a
running loop (a script, a test) it runs to its end inside ``click()``.

Each group of actions has a status line beside it (``responses`` under the plan-and-production
buttons, ``plan_said``, ``edit_said``, ``resume_said``, ``regenerate_said``, ``review_said``,
``final_said``): what a button did, or why it could not, appears next to that button, in the
panel's words (:mod:`.wording`: the box or button, not a command-line flag or command).
"""

from __future__ import annotations

import asyncio
import json
import os
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import requests

from sparkle_motion_dagster import stages
from sparkle_motion_dagster.panel import plan_view, previews, reachability
from sparkle_motion_dagster.panel.client import ArtifactClient, ServiceError
from sparkle_motion_dagster.panel.colab import browser_url, in_colab
from sparkle_motion_dagster.panel.endpoints import PanelEndpoints
from sparkle_motion_dagster.panel.launcher import DONE, DagsterLauncher, LaunchError
from sparkle_motion_dagster.panel.wording import in_panel_words, review_line, unreachable
from sparkle_motion_dagster.lifecycle.regenerate import format_seeds
from sparkle_motion_dagster.stages import STAGE_KEYS, downstream

ACTIVE = {"queued", "running", "paused"}
ENDED = {"succeeded", "failed", "stopped", "planned"}
# Where "Resume from ..." makes sense: a stage failed, or a person stopped the film.
INTERRUPTED = {"failed", "stopped"}
DRY_RUN_CONFIG = {"ops": {"movie_plan": {"config": {"dry_run": True}}}}


def _button(description: str, style: str = "", icon: str = "") -> widgets.Button:
    return widgets.Button(description=description, button_style=style, icon=icon,
                          layout=widgets.Layout(width="auto"))


def _status_line() -> widgets.HTML:
    """The line beside an action group where its buttons say what they did."""
    return widgets.HTML(layout=widgets.Layout(margin="0 0 0 8px"))


def _show(widget: widgets.Widget, shown: bool) -> None:
    widget.layout.display = None if shown else "none"


class ControlPanel:
    """The panel; show it as a cell's last expression. See the module docstring."""

    def __init__(self, endpoints: PanelEndpoints | None = None, *, size: str = ""):
        self.endpoints = endpoints or PanelEndpoints.from_environment()
        self.client = ArtifactClient(self.endpoints)
        self.launcher = DagsterLauncher(self.endpoints.dagster_url, self.endpoints.timeout_s)
        self.status: dict[str, Any] | None = None
        self.artifacts: dict[str, Any] | None = None
        self.plan_document: dict[str, Any] | None = None
        self.plan_run_id: str | None = None  # the run Generate Plan made, filmed by Run Production
        self.last_dagster_run: str | None = None
        self.review_gate_passed: bool | None = None
        self._poller: asyncio.Task | None = None
        self._preview_key: Any = None
        self._tasks: set[asyncio.Task] = set()
        self._no_loop = False
        self._final_key: Any = None
        self._build(size)

    # --- layout ---------------------------------------------------------------------------

    def _build(self, size: str) -> None:
        w = widgets
        self.prompt = w.Textarea(description="Prompt", placeholder="A story prompt",
                                 layout=w.Layout(width="100%", height="4em"))
        self.title = w.Text(description="Title", placeholder="The film's title")
        self.size = w.Text(value=size, description="Size", placeholder="WIDTHxHEIGHT (optional)")
        self.generate_plan = _button("Generate Plan", "primary", "magic")
        self.plan_uri = w.Text(description="Plan URI", placeholder="a file path, file:// or the service's URL",
                               layout=w.Layout(width="60%"))
        self.load_plan = _button("Load Plan JSON", icon="folder-open")
        self.plan_details = w.HTML("<i>no plan yet</i>")
        self.plan_review = w.HTML()
        self.plan_report = w.HTML()  # the intake's warnings and estimated cost, once a dry run or a run made them
        self.plan_report_data: dict[str, Any] | None = None
        self.plan_editor = w.Textarea(description="Edit plan", layout=w.Layout(width="100%", height="14em"))
        self.validate_plan = _button("Validate edit", icon="check")
        self.mode = w.Dropdown(options=[("run", "run"), ("dry", "dry")], value="run", description="Mode")
        self.send_inline = w.Checkbox(value=False, description="Send plan inline")
        self.run_production = _button("Run Production", "success", "play")
        self.pause = _button("Pause", "warning", "pause")
        self.resume = _button("Resume", "info", "play")
        self.stop = _button("Stop", "danger", "stop")
        self.run_id = w.Text(description="Run ID", placeholder="run_…")
        self.stage_filter = w.Text(description="Stage", placeholder="all stages (e.g. finalize)")
        self.poll_status = w.ToggleButton(value=False, description="Poll Status", icon="refresh")
        self.interval = w.BoundedFloatText(value=3.0, min=0.5, max=600, step=0.5, description="Interval (s)")
        self.auto_fetch = w.Checkbox(value=True, description="Auto-fetch artifacts")
        self.refresh_artifacts = _button("Refresh Artifacts", icon="download")
        self.responses = _status_line()  # Generate Plan, Run Production, Pause, Resume, Stop
        self.plan_said, self.edit_said, self.resume_said = _status_line(), _status_line(), _status_line()
        self.regenerate_said, self.review_said, self.final_said = _status_line(), _status_line(), _status_line()
        self.check_health = _button("Check services", icon="heartbeat")
        self.backend = w.HTML("<span class='sm-backend'>artifact backend: not checked yet (Check services)</span>")
        self.services_line = w.HTML("<div class='sm-services'>services: not checked yet (Check services)</div>")
        self.status_banner = w.HTML()
        self.progress = w.FloatProgress(value=0, min=0, max=1, description="Progress")
        self.stage_table = w.HTML()
        self.log = w.HTML()
        self.resume_stage = w.Dropdown(options=list(STAGE_KEYS), value=STAGE_KEYS[0], description="From stage")
        self.resume_from_stage = _button("Resume from stage", "warning", "step-forward")
        self.artifacts_summary = w.HTML()
        self.stage_previews = {folder: w.HTML("<i>nothing yet</i>") for _, folder in previews.TABS}
        self.shot = w.Dropdown(options=[], description="Shot")
        self.regen_seed = w.Text(description="Seed", placeholder="optional")
        self.regenerate_clip = _button("Regenerate clip", icon="film")
        self.regenerate_keyframes = _button("Regenerate keyframes", icon="image")
        self.final_video = w.HTML("<i>no final video yet</i>")
        self.final_summary = w.HTML()  # the deliverable: length, size, review, whether it can be shared
        self.download = _button("Download", icon="download")
        self.download_link = w.HTML()
        self.review_banner = w.HTML()
        self.reviewer = w.Text(description="Reviewer", placeholder="your name")
        self.review_notes = w.Textarea(description="Notes", placeholder="what you checked")
        self.approve = _button("Approve", "success", "check")
        self.reject = _button("Reject", "danger", "times")
        self.skip = _button("Skip", icon="forward")
        self.resume_final = _button("Resume from finalize", "warning", "step-forward")

        production, review = self.responses, self.review_said
        for button, work, line in (
                (self.generate_plan, self._generate_plan, production), (self.load_plan, self._load_plan, self.plan_said),
                (self.validate_plan, self._validate_plan, self.edit_said),
                (self.run_production, self._run_production, production),
                (self.pause, lambda: self._control("pause"), production),
                (self.resume, lambda: self._control("resume"), production),
                (self.stop, lambda: self._control("stop"), production),
                (self.refresh_artifacts, self._refresh_async, production),
                (self.resume_from_stage, lambda: self._resume_from(self.resume_stage.value, self.resume_said),
                 self.resume_said),
                (self.resume_final, lambda: self._resume_from("video_final", self.final_said), self.final_said),
                (self.regenerate_clip, lambda: self._regenerate("clip"), self.regenerate_said),
                (self.regenerate_keyframes, lambda: self._regenerate("keyframe"), self.regenerate_said),
                (self.approve, lambda: self._review("approve"), review),
                (self.reject, lambda: self._review("reject"), review),
                (self.skip, lambda: self._review("skip"), review), (self.download, self._download, review),
                (self.check_health, self._check_health, self.services_line)):
            button.on_click(self._handler(work, line))
        self.poll_status.observe(self._poll_toggled, names="value")

        clips_folder = stages.folder("video_clips")  # its tab also regenerates a shot
        tabs = w.Tab(children=[w.VBox([self.stage_previews[folder]]
                                      + ([w.HBox([self.shot, self.regen_seed]),
                                          w.HBox([self.regenerate_clip, self.regenerate_keyframes, self.regenerate_said])]
                                         if folder == clips_folder else [])) for _, folder in previews.TABS])
        for index, (title, _) in enumerate(previews.TABS):
            tabs.set_title(index, title)
        self.preview_tabs = tabs
        self.resume_final_row = w.HBox([self.resume_final, self.final_said])
        self.approve_row = w.HBox([self.approve, self.reject, self.skip, self.review_said])
        final = w.VBox([self.final_summary, self.review_banner, self.final_video,
                        w.HBox([self.download, self.download_link]),
                        w.HBox([self.reviewer, self.review_notes]), self.approve_row,
                        self.resume_final_row])
        self.resume_row = w.HBox([self.resume_stage, self.resume_from_stage, self.resume_said])
        self.widget = w.VBox([
            w.HTML("<h3>Sparkle Motion control panel</h3>"), w.HBox([self.services_line, self.check_health]),
            self.backend,
            w.HBox([self.title, self.size]), self.prompt,
            w.HBox([self.plan_uri, self.load_plan, self.plan_said]),
            w.HBox([self.mode, self.send_inline]),
            w.HBox([self.generate_plan, self.run_production, self.pause, self.resume, self.stop]),
            self.responses,
            w.HBox([self.run_id, self.stage_filter]),
            w.HBox([self.poll_status, self.interval, self.auto_fetch, self.refresh_artifacts]),
            w.Accordion(children=[w.VBox([self.plan_details, self.plan_report, self.plan_review, self.plan_editor,
                                   w.HBox([self.validate_plan, self.edit_said])])],
                        titles=("Plan details",), selected_index=0),
            self.status_banner, self.resume_row,
            self.progress, self.stage_table, self.log,
            self.artifacts_summary, tabs,
            w.HTML("<h4>Final deliverable</h4>"), final,
        ], layout=w.Layout(width="100%"))
        self._set_buttons(None)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # --- running a button's work ---------------------------------------------------------------

    def _handler(self, work, line: widgets.HTML):
        def clicked(_button):
            self._spawn(work(), line)
        return clicked

    def _spawn(self, coroutine, line: widgets.HTML) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._no_loop = True  # a script or a test: the work ends inside click(); it polls with refresh()
            try:
                asyncio.run(self._guarded(coroutine, line))
            finally:
                self._no_loop = False
            return
        task = loop.create_task(self._guarded(coroutine, line))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coroutine, line: widgets.HTML | None = None) -> None:
        """Run a button's work; what goes wrong is said on ``line``, beside the button."""
        try:
            await coroutine
        except requests.ConnectionError as exc:
            url = getattr(exc.request, "url", "") or ""
            service, base = (("Dagster webserver", self.endpoints.dagster_url) if url.startswith(self.endpoints.dagster_url)
                             else ("artifact service", self.endpoints.artifacts_url))
            self._say(unreachable(service, base), error=True, line=line)
        except (ServiceError, LaunchError, ValueError, OSError) as exc:
            self._say(str(exc), error=True, line=line)
        except Exception as exc:  # noqa: BLE001 - a panel must show what went wrong, not die
            self._say(f"{type(exc).__name__}: {exc}", error=True, line=line)

    def _say(self, message: str, *, error: bool = False, line: widgets.HTML | None = None) -> None:
        """Say ``message`` on ``line`` (the production line when none), in the panel's words."""
        colour = "#b00020" if error else "#333"
        kind = "sm-error" if error else "sm-said"
        (line or self.responses).value = (f'<div class="sm-response {kind}" style="color:{colour}">'
                                          f"{escape(in_panel_words(message))}</div>")

    async def wait_for_dagster_run(self, dagster_run_id: str, attempts: int = 3000) -> str:
        """Poll the Dagster run until it ends; its final status."""
        for _ in range(attempts):
            state = self.launcher.run_status(dagster_run_id)
            if state in DONE:
                return state
            await asyncio.sleep(0.3)
        raise LaunchError(f"Dagster run {dagster_run_id} did not end")

    def check_services(self) -> list[reachability.Answer]:
        """Ask the Dagster UI and the artifact service whether they answer; shown on the services line."""
        answers = reachability.probe_services(self.endpoints)
        self.services_line.value = reachability.services_html(answers)
        return answers

    async def _check_health(self) -> None:
        """The seed's "Check filesystem health", with the services line: which services answer, the
        artifact backend and whether the service is ready."""
        answers = self.check_services()
        if not answers[1].answered:
            self.backend.value = "<span class='sm-backend'>artifact backend: the artifact service does not answer</span>"
            return
        health = self.client.get("/healthz")
        ready = self.client.ready()
        problems = health.get("problems", []) + ready.get("problems", [])
        self.backend.value = (f"<span class='sm-backend'>artifacts: {escape(health.get('backend', '?'))} backend at "
                              f"{escape(self.endpoints.artifacts_url)} ({escape(health.get('auth', '?'))} auth) · "
                              f"{'ready' if ready.get('ready') else 'NOT ready: ' + escape('; '.join(problems))}</span>")

    # --- plan ------------------------------------------------------------------------------

    async def _generate_plan(self) -> None:
        """Submit the prompt as a run, plan it (``plan_dry_run``: the movie_plan asset asks the
        planner) and load the plan it wrote."""
        if not self.prompt.value.strip() or not self.title.value.strip():
            raise ValueError("prompt and title: both are needed to generate a plan")
        run_id = self.client.post("/runs", {"prompt": self.prompt.value, "title": self.title.value,
                                            "size": self.size.value.strip(), "source": "panel"})["run_id"]
        self.run_id.value = run_id
        self._say(f"{run_id}: planning…")
        self.last_dagster_run = self.launcher.launch("plan_dry_run", run_id=run_id, run_config=DRY_RUN_CONFIG)
        outcome = await self.wait_for_dagster_run(self.last_dagster_run)
        if outcome != "SUCCESS":
            self.refresh()
            raise LaunchError(f"{run_id}: planning ended {outcome}; see the log below or the Dagster UI")
        rows = self.client.artifacts(run_id, "plan_intake")["artifacts"]
        row = next((r for r in rows if r["artifact_type"] == "plan_artifact"), None)
        if row is None or not row.get("download_url"):
            raise LaunchError(f"{run_id}: plan intake published no plan_artifact")
        self.plan_uri.value = self.client.file_url(row["download_url"])
        await self._load_plan()
        self.plan_run_id = run_id
        self._say(f"{run_id}: plan ready; review it (Plan details below), then Run Production")
        self.refresh()

    def read_plan_uri(self, uri: str) -> dict[str, Any]:
        """The plan a ``Plan URI`` names: the artifact service's URL, ``file://`` or a local path."""
        uri = uri.strip()
        if not uri:
            raise ValueError("Plan URI: give a plan file path, a file:// URI or the service's URL")
        if uri.startswith(("http://", "https://", "/files/")):
            return json.loads(self.client.fetch(uri))
        from sparkle_motion_dagster.film.plan import read_plan_file

        return read_plan_file(Path(uri.removeprefix("file://")).expanduser())

    async def _load_plan(self) -> None:
        """Load the plan the Plan URI names into Plan details (it is filmed as a new run)."""
        document = self.read_plan_uri(self.plan_uri.value)
        _, problems = plan_view.check_edit(json.dumps(document))
        if problems:
            self.plan_details.value = plan_view.problems_html(problems)
            raise ValueError(f"Plan URI: the plan is not valid ({problems[0]['field']}: {problems[0]['problem']})")
        self.plan_document = document
        self.plan_run_id = None  # a loaded plan is filmed as a new run
        self.plan_details.value = plan_view.summary_html(document)
        self.plan_review.value = plan_view.review_html(document)
        self.plan_editor.value = json.dumps(document, indent=2)
        self._set_buttons(self.status)
        self._say("plan loaded; review it in Plan details, then Run Production", line=self.plan_said)

    def validate_edit(self) -> list[dict[str, str]]:
        """The inline edit's problems with their field paths (shown in Plan details); [] when valid."""
        document, problems = plan_view.check_edit(self.plan_editor.value)
        if problems:
            self.plan_details.value = plan_view.problems_html(problems)
        elif document is not None:
            self.plan_details.value = plan_view.summary_html(document)
            self.plan_review.value = plan_view.review_html(document)
        return problems

    async def _validate_plan(self) -> None:
        problems = self.validate_edit()
        self._say("the edited plan is valid" if not problems else f"{len(problems)} problem(s) in the edited plan",
                  error=bool(problems), line=self.edit_said)

    # --- production ------------------------------------------------------------------------

    async def _run_production(self) -> None:
        """Film (or, in dry mode, only plan) the reviewed plan: the run Generate Plan made; with
        Send plan inline, the edited plan as a new run (it is validated first and refused with
        its field paths)."""
        edited = False
        if self.send_inline.value:
            document, problems = plan_view.check_edit(self.plan_editor.value)
            if problems:
                self.plan_details.value = plan_view.problems_html(problems)
                raise ValueError(f"the edited plan is refused: {problems[0]['field']}: {problems[0]['problem']}")
            edited = document != self.plan_document
        else:
            document = self.plan_document
        run_id = self.plan_run_id if (self.plan_run_id and not edited) else None
        if run_id is None:
            if document is None:
                raise ValueError("no plan: Generate Plan, or Load Plan JSON from a Plan URI, first")
            run_id = self.client.post("/runs", {"plan": document, "size": self.size.value.strip(),
                                                "source": "panel:inline" if edited else "panel"})["run_id"]
        self.run_id.value = run_id
        self.plan_run_id = None
        if self.mode.value == "dry":
            self.last_dagster_run = self.launcher.launch("plan_dry_run", run_id=run_id, run_config=DRY_RUN_CONFIG)
        else:
            self.last_dagster_run = self.launcher.launch("film", run_id=run_id)
        self._say(f"{run_id}: {'dry run' if self.mode.value == 'dry' else 'production'} launched "
                  f"(Dagster run {self.last_dagster_run[:8]})")
        self._preview_key = None
        self.refresh()
        self.poll_status.value = True

    async def _control(self, action: str) -> None:
        run_id = self._current_run()
        answer = self.client.post(f"/control/{action}", {"run_id": run_id})
        if action == "resume" and answer["needs_launch"]:
            # Nothing is filming a held or stopped run: launch what is missing (finished work is reused).
            launch = answer.get("launch") or {}
            self.last_dagster_run = self.launcher.launch("film", run_id=run_id, assets=launch.get("assets") or None,
                                                         run_config=launch.get("run_config") or None)
            self._say(f"{run_id}: resumed; relaunched (Dagster run {self.last_dagster_run[:8]})")
            self.poll_status.value = True
        else:
            self._say(f"{run_id}: {action} → {answer['state']}")
        self.refresh()

    async def _resume_from(self, stage: str, line: widgets.HTML) -> None:
        """Continue a failed or stopped run from ``stage``: it and what depends on it run again,
        and items whose inputs did not change are reused."""
        run_id = self._current_run()
        self.client.post("/control/resume", {"run_id": run_id})
        self.last_dagster_run = self.launcher.launch("film", run_id=run_id, assets=downstream(stage))
        self._say(f"{run_id}: resuming from {stage} (Dagster run {self.last_dagster_run[:8]})", line=line)
        self.refresh()
        self.poll_status.value = True

    async def _regenerate(self, what: str) -> None:
        run_id = self._current_run()
        if not self.shot.value:
            raise ValueError("shot: choose the shot to regenerate (the Clips tab lists them once clips exist)")
        seed = self.regen_seed.value.strip()
        if seed and not seed.lstrip("-").isdigit():
            raise ValueError(f"seed: must be a whole number, got {seed!r}")
        change = self.client.post("/regenerate", {"run_id": run_id, "shot_id": self.shot.value, "what": what,
                                                  "seed": int(seed) if seed else None})
        launch = change["launch"]
        self.last_dagster_run = self.launcher.launch(launch["job"], run_id=run_id, assets=launch["assets"])
        self._say(f"{change['shot_id']}: regenerating the {what} with seed(s) {format_seeds(change['seeds'])} "
                  f"(regenerations: {change['count']})", line=self.regenerate_said)
        self._preview_key = None
        self.refresh()
        self.poll_status.value = True

    async def _review(self, decision: str) -> None:
        """Record the manual review decision, then run the review gate so Dagster shows it."""
        run_id = self._current_run()
        if not self.reviewer.value.strip():
            raise ValueError(f"Reviewer box: type your name in it to {decision} the film (a review records who made it)")
        # The review binds to the video the player shows (the service refuses it if that is no longer the final).
        seen = self._final_key[0] if self._final_key else None
        answer = self.client.post("/review", {"run_id": run_id, "decision": decision, "sha256": seen,
                                              "reviewer": self.reviewer.value, "notes": self.review_notes.value})
        launch = answer["launch"]
        gate = self.launcher.launch_checks(launch["checks"], run_id=launch["partition"],
                                           tags={"sparkle/run_id": run_id})
        self._say(f"{run_id}: review {answer['review']['status']}; checking the review gate…", line=self.review_said)
        await self.wait_for_dagster_run(gate)
        self.review_gate_passed = self.launcher.check_results(gate).get("approved_by_reviewer")
        self._say(f"{run_id}: review {answer['review']['status']}; review gate "
                  f"{'passed' if self.review_gate_passed else 'not passed'}", line=self.review_said)
        self._preview_key = None
        self.refresh()

    async def _download(self) -> None:
        row = self.final_row()
        if row is None:
            raise ValueError("Download: no final video yet")
        if in_colab() and Path(row["local_path"]).exists():
            from google.colab import files  # only in Colab

            files.download(row["local_path"])
        self.download_link.value = (f'<a class="sm-download" href="{escape(self._url(row), quote=True)}" '
                                    f'download="video_final.mp4" target="_blank">video_final.mp4 '
                                    f'({(row.get("size_bytes") or 0) / 1e6:.1f} MB)</a>')

    def _current_run(self) -> str:
        run_id = self.run_id.value.strip()
        if not run_id:
            raise ValueError("Run ID: no run yet (Generate Plan or Run Production first, or paste a run_id)")
        return run_id

    # --- polling ----------------------------------------------------------------------------

    def _poll_toggled(self, change) -> None:
        if change["new"] and not self._no_loop:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a script): call refresh() to poll
            if self._poller is None or self._poller.done():
                self._poller = loop.create_task(self._poll_loop())
        elif self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _poll_loop(self) -> None:
        while self.poll_status.value:
            try:
                status = self.refresh(artifacts=self.auto_fetch.value)
            except Exception as exc:  # noqa: BLE001 - keep polling through a restarting service
                self._say(f"polling: {exc}", error=True)
                status = None
            if status and status["status"] in ENDED and not self._tasks:
                self.poll_status.value = False
                break
            await asyncio.sleep(max(0.5, float(self.interval.value)))

    async def _refresh_async(self) -> None:
        self.refresh()

    def refresh(self, artifacts: bool = True) -> dict[str, Any] | None:
        """One status (and artifacts) poll of the current run; returns the ``/status`` dict."""
        run_id = self.run_id.value.strip()
        if not run_id:
            return None
        self.check_services()
        status = self.client.status(run_id)
        self.status = status
        if artifacts:
            try:
                self.artifacts = self.client.artifacts(run_id, self.stage_filter.value.strip() or None)
            except ServiceError as exc:
                if exc.status != 404:
                    raise
                self.artifacts = {"stages": [], "artifacts": []}
        sections = {s["stage"]: s for s in (self.artifacts or {}).get("stages", [])}
        self.status_banner.value = previews.banner_html(status)
        self.progress.value = status.get("progress", 0.0)
        self.progress.bar_style = {"succeeded": "success", "failed": "danger", "stopped": "danger"}.get(
            status["status"], "info")
        self.stage_table.value = previews.stage_table_html(status, sections)
        self.log.value = previews.log_html(status)
        if artifacts:
            self._show_previews(sections)
        self._show_final(status)
        self._set_buttons(status)
        return status

    # --- previews ---------------------------------------------------------------------------

    def _url(self, row: dict[str, Any]) -> str | None:
        return browser_url(self.client.file_url(row["download_url"])) if row.get("download_url") else None

    def _show_previews(self, sections: dict[str, dict[str, Any]]) -> None:
        key = tuple((s, tuple(r.get("sha256") or r["local_path"] for r in sec["artifacts"]))
                    for s, sec in sorted(sections.items()))
        if key == self._preview_key:
            return  # unchanged: do not reload the players
        self._preview_key = key
        for folder, pane in self.stage_previews.items():
            pane.value = previews.stage_preview_html(sections.get(folder), self._url)
        self.artifacts_summary.value = "<div class='sm-artifacts'>" + " · ".join(
            f"<b>{escape(s)}</b>: {sec['count']} ({escape(', '.join(sec['media_types']))})"
            for s, sec in sections.items()) + "</div>"
        self._show_report(sections.get("plan_intake"))
        shots = sorted({r.get("shot_id") for r in (sections.get("video_clips") or {}).get("artifacts", [])
                        if r.get("shot_id")})
        if shots and list(self.shot.options) != shots:
            self.shot.options = shots

    def _show_report(self, section: dict[str, Any] | None) -> None:
        row = next((r for r in (section or {}).get("artifacts", []) if r["artifact_type"] == "plan_validation"), None)
        if row is None or not row.get("download_url"):
            return
        self.plan_report_data = json.loads(self.client.fetch(row["download_url"]))
        self.plan_report.value = plan_view.report_html(self.plan_report_data)

    def final_row(self) -> dict[str, Any] | None:
        rows = (self.artifacts or {}).get("artifacts", [])
        return next((r for r in rows if r["artifact_type"] == "video_final"), None)

    def _show_final(self, status: dict[str, Any]) -> None:
        """The final deliverable: the player, what the file is, the review, and what is missing."""
        row = self.final_row()
        review = status.get("review") or {}
        state = status["status"]
        if row is not None:
            if self._final_key != (row.get("sha256"), row["local_path"]):  # a new link reloads the player
                self._final_key = (row.get("sha256"), row["local_path"])
                self.final_video.value = (f'<video class="sm-final" controls preload="metadata" width="640" '
                                          f'src="{escape(self._url(row) or "", quote=True)}"></video>')
        else:
            self._final_key = None
            self.final_video.value = self._no_final_text(state)
        self.final_summary.value = previews.final_summary_html(status, row, review_line(review if row else None))
        banner = review.get("banner") if row is not None else None
        if banner:
            banner = in_panel_words(banner)
        self.review_banner.value = (f'<div class="sm-review-banner" style="background:#fff3cd;padding:6px">'
                                    f"{escape(banner)}</div>" if banner else "")

    @staticmethod
    def _no_final_text(state: str) -> str:
        if state in ACTIVE:
            return "<i>the final video appears when the finalize stage ends</i>"
        if state in INTERRUPTED:
            return ("<b class='sm-no-final'>This run has no video_final yet</b>: "
                    "<i>Resume from finalize</i> renders what is missing.")
        return "<i class='sm-final-later'>the final video appears here once the film is made (Run Production)</i>"

    def _set_buttons(self, status: dict[str, Any] | None) -> None:
        state = (status or {}).get("status")
        active = state in ACTIVE
        has_final = self.final_row() is not None
        self.generate_plan.disabled = active
        self.run_production.disabled = active or (self.plan_document is None and self.plan_run_id is None
                                                  and not self.plan_editor.value.strip())
        self.pause.disabled = state not in ("queued", "running")
        self.resume.disabled = state not in ("paused", "held", "stopped", "failed")
        self.stop.disabled = not active and state != "held"
        self.resume_from_stage.disabled = state not in ("failed", "stopped")
        for button in (self.regenerate_clip, self.regenerate_keyframes):
            button.disabled = active or state != "succeeded" or not self.shot.options
        for button in (self.approve, self.reject, self.skip, self.download):
            button.disabled = not has_final or active
        self.resume_final.disabled = has_final or active or state is None
        # Resuming from a stage is offered only where there is something to resume: a failed or stopped film.
        # (their status lines stay, so what the last click did is still said).
        for control in (self.resume_stage, self.resume_from_stage):
            _show(control, state in INTERRUPTED)
        _show(self.resume_final, state in INTERRUPTED and not has_final)

    # --- for scripts and the notebook's unattended mode --------------------------------------

    async def until_ended(self, attempts: int = 6000) -> dict[str, Any]:
        """Poll until the run is no longer queued, running or paused; the last status."""
        for _ in range(attempts):
            status = self.refresh()
            if status and status["status"] not in ACTIVE and not self._tasks:
                return status
            await asyncio.sleep(0.5)
        raise LaunchError("the run did not end")

    async def run_unattended(self) -> dict[str, Any]:
        """Generate the plan from ``prompt`` and ``title``, film it and wait: what a person does
        with Generate Plan and Run Production (the notebook's unattended mode)."""
        await self._guarded(self._generate_plan())
        await self._guarded(self._run_production())
        return await self.until_ended()


def create_control_panel(endpoints: PanelEndpoints | None = None, **options) -> ControlPanel:
    """The control panel for the services in ``endpoints`` (default: the environment, then the
    project's state folder, then loopback defaults)."""
    return ControlPanel(endpoints, **options)
