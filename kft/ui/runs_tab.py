"""The runs tab: every run under DATA_DIR/runs with its status, settings and final loss; resume an interrupted run
from its last complete checkpoint; open a run's adapter in the comparison tab. Event wiring only (the logic is
kft/runs/store.py and the training service); delete a run, after a confirmation. Endpoints (stable api_names):
/list_runs, /resume_run, /delete_run."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.context import Context

from ..runs.store import RunInfo
from ..services import BusyError
from .guard import scrub_paths
from .plots import chart, loss_frame, status_text
from .strings import tr
from .tab import Tab

logger = logging.getLogger(__name__)
POLL_S = 5.0

COLUMNS = ("run", "status", "model", "data", "steps", "settings", "final_loss", "checkpoint", "adapter", "started")
COLUMN_WIDTHS = ["12%", "10%", "8%", "8%", "7%", "22%", "7%", "11%", "5%", "10%"]  # in COLUMNS' order


def _status(info: RunInfo, lang: str) -> str:
    text = status_text(info.status, lang)
    text = text if text == info.status else f"{text} ({info.status})"
    return f"{text} {tr('runs.damaged', lang, why='; '.join(info.damage))}" if info.damage else text


def runs_frame(runs: list[RunInfo], lang: str, data_dir: Path | None = None) -> pd.DataFrame:
    """The runs as a table (plain data; one row per run, newest first); files named relative to ``data_dir``."""
    rows = [[r.name, _status(r, lang), scrub_paths(r.model or "", data_dir), scrub_paths(r.data or "", data_dir), f"{r.steps_done} / {r.total_steps}",
             r.settings, "" if r.final_loss is None else f"{r.final_loss:.4f}", r.checkpoint or "",
             "✓" if r.has_adapter else "", r.started_at or ""] for r in runs]
    return pd.DataFrame(rows, columns=[tr(f"runs_col.{key}", lang) for key in COLUMNS])


class RunsTab(Tab):
    id = "runs"

    def build(self, lang: str) -> None:
        self._frame: tuple[list[RunInfo], str, Any, str] | None = None  # the last table rendered (see _table)
        self._frame_lock = threading.Lock()
        runs = self.ws.training.runs()
        self.label(gr.Markdown(tr("runs.intro", lang)), "runs.intro", "value")
        if self.ws.limits.read_only:
            self.label(gr.Markdown(tr("runs.read_only", lang), elem_id="kft-runs-read-only"), "runs.read_only", "value")
        # widths: else the long settings cell pushes the last columns out of view and squeezes the checkpoint header
        self.table = gr.Dataframe(runs_frame(runs, lang, self.ws.data_dir), interactive=False, wrap=True,
                                  label=tr("runs.table", lang), elem_id="kft-runs-table", column_widths=COLUMN_WIDTHS)
        self.relabel_with(self.table, lambda new: gr.update(label=tr("runs.table", new),
                                                            value=runs_frame(self.ws.training.runs(), new, self.ws.data_dir)))
        with gr.Row():
            self.run = self.label(gr.Dropdown([r.name for r in runs], value=self._default(runs),
                                              label=tr("runs.run", lang), allow_custom_value=True, scale=3,
                                              elem_id="kft-runs-run"), "runs.run")
            self.refresh = self.label(gr.Button(tr("runs.refresh", lang), scale=1), "runs.refresh", "value")
            self.resume = self.label(gr.Button(tr("runs.resume", lang), variant="secondary", scale=2,
                                               interactive=self._resumable(runs, self._default(runs)),
                                               elem_id="kft-resume"), "runs.resume", "value")
            self.compare = self.label(gr.Button(tr("runs.compare", lang), scale=2, elem_id="kft-runs-compare"),
                                      "runs.compare", "value")
        self.notice_box = gr.Markdown(elem_id="kft-runs-notice")
        self._build_delete(lang)
        with gr.Row():
            self.overlay = self.label(gr.Dropdown(["", *(r.name for r in runs)], value="",
                                                  label=tr("runs.overlay", lang), scale=1,
                                                  elem_id="kft-runs-overlay"), "runs.overlay")
            self.curve = self.label_plot(gr.LinePlot(self._curves(self._default(runs), "", lang), x="step", y="loss",
                                                     color="series", color_title=tr("plot.legend_series", lang),
                                                     label=tr("runs.curve", lang), scale=3, min_width=280,
                                                     elem_id="kft-runs-curve"), "runs.curve")
        self.shown = gr.State("")
        self._wire()

    def _build_delete(self, lang: str) -> None:
        """Delete the picked run: a button, then a confirmation naming the run (Delete / Cancel)."""
        with gr.Row():
            self.delete = self.label(gr.Button(tr("runs.delete", lang), variant="stop", size="sm", scale=0,
                                               interactive=not self.ws.limits.read_only,
                                               elem_id="kft-runs-delete"), "runs.delete", "value")
        with gr.Row(visible=False, elem_id="kft-runs-confirm") as self.confirm_row:
            self.confirm_text = gr.Markdown()
            self.confirm_yes = self.label(gr.Button(tr("runs.delete_yes", lang), variant="stop", size="sm", scale=0,
                                                    elem_id="kft-runs-delete-yes"), "runs.delete_yes", "value")
            self.confirm_no = self.label(gr.Button(tr("runs.delete_no", lang), size="sm", scale=0,
                                                   elem_id="kft-runs-delete-no"), "runs.delete_no", "value")

    @staticmethod
    def _default(runs: list[RunInfo]) -> str | None:
        resumable = [r.name for r in runs if r.resumable]
        return resumable[0] if resumable else (runs[0].name if runs else None)

    def _resumable(self, runs: list[RunInfo], run: str | None) -> bool:
        return not self.ws.limits.read_only and any(r.name == run and r.resumable for r in runs)

    def _curves(self, run: str | None, overlay: str | None, lang: str) -> pd.DataFrame | None:
        """The loss (and evaluation loss) of the chosen run, and of a second one overlaid. The legend names a series
        alone for one run, and "run 1 · ..." / "run 2 · ..." with an overlay (the pickers above name the runs): a run's
        full name before each series was cut off at phone width ("evaluation (held …")."""
        names = list(dict.fromkeys(n for n in (run, overlay) if n))
        tags = [tr(f"runs.legend_{i}", lang) for i in (1, 2)] if len(names) > 1 else [""]
        frames = [loss_frame(self.ws.training.disk_snapshot(n), lang, tag) for n, tag in zip(names, tags, strict=False)]
        return chart(pd.concat(frames, ignore_index=True) if frames else loss_frame(None, lang))

    def on_select(self, run: str | None, overlay: str | None, lang: str) -> dict[Any, Any]:
        """A run (or the overlay) chosen: its curve, and Resume enabled only if that run can be resumed."""
        return {self.curve: self._curves(run, overlay, lang),
                self.resume: gr.update(interactive=self._resumable(self.ws.training.runs(), run))}

    def _wire(self) -> None:
        outputs = [self.table, self.run, self.shown, self.overlay, self.resume]
        for box in (self.run, self.overlay):
            box.input(self.on_select, inputs=[self.run, self.overlay, self.lang_box], outputs=[self.curve, self.resume],
                      api_visibility="private", show_progress="hidden", queue=False)
        self.refresh.click(self.on_list, inputs=[self.run, self.lang_box], outputs=outputs, api_name="list_runs").then(
            self.on_select, inputs=[self.run, self.overlay, self.lang_box], outputs=[self.curve, self.resume],
            api_visibility="private", show_progress="hidden", queue=False)
        self.resume.click(self.on_resume, inputs=[self.run, self.lang_box], outputs=self.notice_box,
                          api_name="resume_run")
        self.delete.click(self.on_ask_delete, inputs=[self.run, self.lang_box],
                          outputs=[self.confirm_row, self.confirm_text, self.notice_box], api_visibility="private",
                          show_progress="hidden", queue=False)
        self.confirm_no.click(lambda: gr.update(visible=False), outputs=self.confirm_row, api_visibility="private",
                              show_progress="hidden", queue=False)
        self.confirm_yes.click(self.on_delete, inputs=[self.run, self.lang_box],
                               outputs=[self.notice_box, self.confirm_row, self.delete, *outputs, self.curve],
                               api_name="delete_run")
        # a page opened (or reloaded) now sees the runs of now, not those of when the app was built
        Context.root_block.load(self.on_load, inputs=[self.lang_box], outputs=[*outputs, self.curve],
                                api_visibility="private", show_progress="hidden", queue=False)
        gr.Timer(POLL_S).tick(self.on_tick, inputs=[self.run, self.shown, self.overlay, self.lang_box],
                              outputs=[*outputs, self.curve],
                              api_visibility="private", show_progress="hidden", queue=False)

    def _table(self, runs: list[RunInfo], lang: str) -> tuple[Any, str]:
        """The runs table and its JSON, rendered once for every page while the runs are the same objects (the
        service hands back the same RunInfo for a run whose files did not change)."""
        with self._frame_lock:
            held = self._frame
            if held is not None and held[1] == lang and len(held[0]) == len(runs) and all(
                    a is b for a, b in zip(held[0], runs, strict=True)):
                return held[2], held[3]
            frame = runs_frame(runs, lang, self.ws.data_dir)
            self._frame = (runs, lang, frame, frame.to_json())
            return frame, self._frame[3]

    def on_list(self, run: str | None, lang: str) -> dict[Any, Any]:
        runs = self.ws.training.runs()
        names = [r.name for r in runs]
        frame, shown = self._table(runs, lang)
        value = run if run in names else self._default(runs)
        return {self.table: frame, self.run: gr.update(choices=names, value=value), self.shown: shown,
                self.overlay: gr.update(choices=["", *names]), self.resume: gr.update(interactive=self._resumable(runs, value))}

    def on_load(self, lang: str) -> dict[Any, Any]:
        """A page opened or reloaded: the runs of now, and the default run picked among them, with its curve."""
        update = self.on_list(None, lang)
        return {**update, self.overlay: gr.update(choices=update[self.overlay]["choices"], value=""),
                self.curve: self._curves(update[self.run]["value"], "", lang)}

    def on_tick(self, run: str | None, shown: str, overlay: str | None, lang: str) -> dict[Any, Any]:
        """Like on_list (and the curves), but sends nothing when the table has not changed since this page got it."""
        update = self.on_list(run, lang)
        if update[self.shown] == shown:
            return self.unchanged([*update, self.curve])
        overlay = overlay if overlay in update[self.overlay]["choices"] else ""
        return {**update, self.curve: self._curves(update[self.run]["value"], overlay, lang)}

    def on_resume(self, run: str | None, lang: str) -> str:
        if not run:
            return tr("runs.pick_run", lang)
        try:
            job = self.ws.training.resume(str(run))
        except (ValueError, BusyError) as exc:
            return self.notice(tr("runs.cannot_resume", lang, msg=exc))
        logger.info("run %s resumed from the UI", job.run_dir.name)
        return tr("runs.resumed", lang, run=job.run_dir.name, ckpt=job.resume_from.name if job.resume_from else "-")

    def on_ask_delete(self, run: str | None, lang: str) -> dict[Any, Any]:
        """The delete button: a confirmation naming the run (nothing is deleted yet)."""
        if not run:
            return {self.confirm_row: gr.update(visible=False), self.confirm_text: "",
                    self.notice_box: tr("runs.pick_run", lang)}
        return {self.confirm_row: gr.update(visible=True), self.notice_box: "",
                self.confirm_text: tr("runs.delete_confirm", lang, run=str(run)[:80])}

    def on_delete(self, run: str | None, lang: str) -> dict[Any, Any]:
        """Delete the run (the confirmation's button, or /delete_run): the notice says what happened, and the
        table and pickers show the runs that are left."""
        if not run:
            note = tr("runs.pick_run", lang)
        else:
            try:
                note = tr("runs.deleted", lang, run=self.ws.delete_run(str(run)))
                logger.info("run %s deleted from the UI", run)
            except (ValueError, BusyError) as exc:
                note = self.notice(tr("runs.cannot_delete", lang, msg=exc))
        update = self.on_load(lang)
        return {**update, self.notice_box: note, self.confirm_row: gr.update(visible=False),
                self.delete: gr.update(interactive=not self.ws.limits.read_only)}

    def connect_compare(self, compare: Any, tabs: gr.Tabs) -> None:
        """The "open in the comparison tab" button: select the run there and switch tabs."""

        def open_in_compare(run: str | None, overlay: str | None, lang: str) -> dict[Any, Any]:
            """The run, and the overlaid run as run B (the third pane) when it holds an adapter: the comparison
            opens on what this tab shows."""
            names = self.ws.comparison.runs_with_adapter()
            if run not in names:
                return {**self.unchanged([tabs, compare.c["source"], compare.c["run"], compare.c["run_b"]]),
                        self.notice_box: f"⚠️ {tr('runs.no_adapter', lang, run=run) if run else tr('runs.pick_run', lang)}"}
            run_b = overlay if overlay in names and overlay != run else ""
            # results another adapter made are cleared by the comparison tab (chained below), with a line saying so
            return {tabs: gr.Tabs(selected="compare"), compare.c["source"]: gr.update(value="run"),
                    compare.c["run"]: gr.update(choices=names, value=run),
                    compare.c["run_b"]: gr.update(choices=["", *names], value=run_b), self.notice_box: ""}

        self.compare.click(open_in_compare, inputs=[self.run, self.overlay, self.lang_box],
                           outputs=[tabs, compare.c["source"], compare.c["run"], compare.c["run_b"], self.notice_box],
                           api_visibility="private", queue=False).then(
            compare.on_user_choice, inputs=compare.follow, outputs=compare.follow,  # a run the user opened stays
            api_visibility="private", queue=False, show_progress="hidden").then(**compare.check_stale)
