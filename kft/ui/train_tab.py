"""The training tab: choose model and data, preview, set every LoRA/training setting, start, watch, stop.

The run is the process-wide Workspace's: every open page polls ``ws.training.snapshot()``, so a reload or a second
reviewer sees the same live run. API names (stable): /start_training, /stop_training, /training_status,
/preview_data, /export_settings, /import_settings, /push_to_hub.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import Context

from ..config.args import DEFAULT_MODEL, SMALL_MODEL, TINY_MODEL, DataArgs, RunConfig
from ..config.files import load_config, save_config
from ..config.presets import PRESET_FIELDS
from ..config.validation import SettingsError, check
from ..runs.export import ExportError
from ..runs.integrity import os_reason
from ..services import BusyError
from ..services.exports import ExportFolder, download_key
from ..system.hardware import has_cuda
from ..training.preflight import preview_data
from . import plots
from . import train_form as form
from .strings import tr
from .tab import Tab

logger = logging.getLogger(__name__)

POLL_S = 1.5
RENDER_CACHE = 4  # rendered snapshots kept (shared by every page)
MODEL_CHOICES = (("llama", DEFAULT_MODEL), ("small", SMALL_MODEL), ("tiny", TINY_MODEL))  # (label key, model name)


def default_model(settings: Any, cuda: bool) -> str:
    """AppSettings.default_model, else Llama 3.1 8B 4-bit on a GPU and the tiny model on the CPU."""
    chosen = getattr(settings, "default_model", None)
    return chosen or (DEFAULT_MODEL if cuda else TINY_MODEL)


def servable_copy(zip_path: Path, exports: ExportFolder) -> Path:
    """A copy of the zip outside the (blocked) data dir, so gr.File serves it without exposing runs/."""
    target = exports.new("downloads", download_key(zip_path)) / zip_path.name
    if not target.is_file() or target.stat().st_mtime < zip_path.stat().st_mtime:
        shutil.copyfile(zip_path, target)
    return target


class TrainTab(Tab):
    """The tab's components and its event handlers (all thin: the logic is in kft)."""

    id = "train"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.cuda = has_cuda()
        self.model_default = default_model(self.settings, self.cuda)
        allowed = self.ws.limits.allowed_models
        if allowed and self.model_default not in allowed:
            self.model_default = allowed[0]
        self.widgets: dict[str, Any] = {}
        self._render_cache: dict[str, dict[str, Any]] = {}  # rendered boxes by snapshot signature, for every page
        self._render_lock = threading.Lock()
        self._held: tuple[float, Any, Any] | None = None  # (when, job, snapshot): what the pages' ticks show now

    def build(self, lang: str) -> None:
        self.lang = lang
        self.shown = gr.State("")
        if self.ws.limits.read_only:  # comparison only: say so where training would start
            self.label(gr.Markdown(tr("train.read_only", lang), elem_id="kft-read-only"), "train.read_only", "value")
        self._model_box()
        self._data_box()
        with self.label(gr.Accordion(tr("train.lora_box", lang), open=False), "train.lora_box"):
            self._fields(form.LORA_FIELDS)
        with self.label(gr.Accordion(tr("train.train_box", lang), open=True), "train.train_box"):
            self._train_box()
        with self.label(gr.Accordion(tr("train.file_box", lang), open=False), "train.file_box"):
            with gr.Row():
                self.export_btn = self.label(gr.Button(tr("train.export_btn", lang)), "train.export_btn", "value")
                self.export_file = self.label(gr.File(label=tr("train.export_file", lang), interactive=False),
                                              "train.export_file")
                self.import_file = self.label(gr.File(label=tr("train.import_file", lang),
                                                      file_types=[".yaml", ".yml", ".json"],
                                                      type="filepath", interactive=not self.ws.limits.read_only),
                                              "train.import_file")
        with gr.Row():
            self.start_btn = self.label(gr.Button(tr("train.start", lang), variant="primary", elem_id="kft-start"),
                                        "train.start", "value")
            self.stop_btn = self.label(gr.Button(tr("train.stop", lang), variant="secondary", interactive=False,
                                                 elem_id="kft-stop"), "train.stop", "value")
        self.notice_box = gr.Markdown(elem_id="kft-notice")
        self._progress_box()
        self._result_box()
        self.start_btn.interactive = not self.ws.limits.read_only  # the server refuses it too
        self._wire()

    def _choices(self, lang: str) -> list[tuple[str, str]]:
        allowed = self.ws.limits.allowed_models
        if allowed:
            return [(m, m) for m in allowed]
        choices = [(tr(f"train.choice_{key}", lang), name) for key, name in MODEL_CHOICES]
        if self.model_default not in dict(MODEL_CHOICES).values():
            choices.append((self.model_default, self.model_default))
        return choices

    def _model_box(self) -> None:
        lang = self.lang
        with self.label(gr.Accordion(tr("train.model_box", lang), open=True), "train.model_box"):
            self.model = gr.Dropdown(choices=self._choices(lang), value=self.model_default,
                                     allow_custom_value=not self.ws.limits.allowed_models,
                                     label=tr("train.model", lang), info=tr("train.model_info", lang),
                                     elem_id="kft-model")
            self.relabel_with(self.model, lambda new: gr.update(label=tr("train.model", new),
                                                                info=tr("train.model_info", new),
                                                                choices=self._choices(new)))
            note = gr.Markdown(tr("train.no_gpu", lang), visible=not self.cuda, elem_id="kft-no-gpu")
            self.label(note, "train.no_gpu", "value")
            self._fields(form.MODEL_FIELDS)

    def _kinds(self, lang: str) -> list[tuple[str, str]]:
        return [(tr(f"train.kind_{k}", lang), k) for k in form.KINDS]

    def _data_box(self) -> None:
        lang = self.lang
        kind = "sample" if self.model_default == TINY_MODEL else "hub"
        with self.label(gr.Accordion(tr("train.data_box", lang), open=True), "train.data_box"):
            self.data_kind = gr.Radio(choices=self._kinds(lang), value=kind, label=tr("train.data_kind", lang),
                                      elem_id="kft-data-kind")
            self.relabel_with(self.data_kind, lambda new: gr.update(label=tr("train.data_kind", new),
                                                                       choices=self._kinds(new)))
            self.hub = self.label(gr.Textbox(DataArgs().source, label=tr("train.hub_dataset", lang), max_lines=1,
                                              visible=kind == "hub"), "train.hub_dataset")
            self.upload = self.label(gr.File(label=tr("train.upload", lang),
                                             file_types=[".jsonl", ".json", ".csv", ".parquet"],
                                              type="filepath", visible=kind == "upload",
                                              interactive=not self.ws.limits.read_only,  # the server refuses too
                                              elem_id="kft-upload"), "train.upload")
            self._fields(form.DATA_FIELDS, hidden=set() if kind == "hub" else {"split"})  # split: Hub datasets only
            self.preview_btn = self.label(gr.Button(tr("train.preview_btn", lang), elem_id="kft-preview-btn"),
                                          "train.preview_btn", "value")
            self.preview = gr.Markdown(elem_id="kft-preview")

    def _train_box(self) -> None:
        lang = self.lang
        mode = form.length_mode_of(form.DEFAULTS)
        self.mode = gr.Radio(choices=self._modes(lang), value=mode, label=tr("train.length_mode", lang))
        self.relabel_with(self.mode, lambda new: gr.update(label=tr("train.length_mode", new),
                                                           choices=self._modes(new)))
        self._fields(form.TRAIN_FIELDS, hidden={"num_train_epochs" if mode == "steps" else "max_steps"})

    def _modes(self, lang: str) -> list[tuple[str, str]]:
        return [(tr(f"train.mode_{m}", lang), m) for m in form.MODES]

    def _fields(self, names: tuple[str, ...], hidden: set[str] | None = None) -> None:
        values = form.config_to_values(form.DEFAULTS)
        with gr.Row(equal_height=False):
            for name in names:
                w = form.make_widget(name, values[name], self.lang, visible=name not in (hidden or set()))
                if name == "load_in_4bit" and not self.cuda:  # 4-bit does nothing on a CPU: not ticked there
                    w.value, w.interactive = False, False
                self.widgets[name] = w
                self.relabel_with(w, lambda new, n=name: form.widget_update(n, new))

    def _progress_box(self) -> None:
        lang = self.lang
        with self.label(gr.Accordion(tr("train.progress_box", lang), open=True), "train.progress_box"):
            self.summary = gr.JSON(visible=False, elem_id="kft-summary")
            self.status = gr.Markdown(plots.status_markdown(None, lang), elem_id="kft-status")
            self.progress = gr.HTML(plots.progress_html(None), elem_id="kft-progress-box")
            with gr.Row():
                self.loss_plot = self.label_plot(gr.LinePlot(x="step", y="loss", color="series",
                                                             color_title=tr("plot.legend_series", lang),
                                                             label=tr("train.loss_plot", lang),
                                                             elem_id="kft-loss-plot"), "train.loss_plot")
                self.lr_plot = self.label(gr.LinePlot(x="step", y="learning_rate", label=tr("train.lr_plot", lang),
                                                       elem_id="kft-lr-plot"), "train.lr_plot")
                mem_key = "train.mem_plot_gpu" if self.cuda else "train.mem_plot_cpu"
                self.mem_plot = self.label_plot(gr.LinePlot(x="seconds", y="GB", color="series", label=tr(mem_key, lang),
                                                            color_title=tr("plot.legend_series", lang),
                                                            elem_id="kft-mem-plot"), mem_key)
            self.watch_title = gr.Markdown(f"**{tr('train.watch_box', lang)}**")
            self.relabel_with(self.watch_title, lambda new: gr.update(value=f"**{tr('train.watch_box', new)}**"))
            self.watch = gr.HTML(plots.watch_html(None, lang), elem_id="kft-watch")
            self.log = self.label(gr.Textbox(label=tr("train.log", lang), lines=plots.LOG_LINES,
                                             max_lines=plots.LOG_LINES, interactive=False, elem_id="kft-log"),
                                  "train.log")

    def _result_box(self) -> None:
        lang = self.lang
        with self.label(gr.Accordion(tr("train.result_box", lang), open=True), "train.result_box"):
            with gr.Row():
                self.report = self.label(gr.Textbox(label=tr("train.memory_report", lang), lines=7, interactive=False,
                                                     elem_id="kft-memory-report"), "train.memory_report")
                with gr.Column():
                    self.run_dir = self.label(gr.Textbox(label=tr("train.run_dir", lang), interactive=False,
                                                          elem_id="kft-run-dir"), "train.run_dir")
                    self.zip = self.label(gr.File(label=tr("train.zip", lang), interactive=False, elem_id="kft-zip"),
                                          "train.zip")
            with gr.Row():
                self.push_repo = gr.Textbox(label=tr("train.push_repo", lang), info=tr("train.push_info", lang),
                                            max_lines=1)
                self.relabel_with(self.push_repo, lambda new: gr.update(label=tr("train.push_repo", new),
                                                                           info=tr("train.push_info", new)))
                self.push_private = self.label(gr.Checkbox(True, label=tr("train.push_private", lang)),
                                               "train.push_private")
                self.push_btn = self.label(gr.Button(tr("train.push_btn", lang)), "train.push_btn", "value")

    def _wire(self) -> None:
        kw = {"model": self.model, "data_kind": self.data_kind, "hub_dataset": self.hub, "upload": self.upload,
              "length_mode": self.mode, **self.widgets, "lang": self.lang_box}
        self.status_out = status_out = [self.summary, self.status, self.progress, self.loss_plot, self.lr_plot, self.mem_plot,
                      self.log, self.report, self.run_dir, self.zip, self.shown, self.start_btn, self.stop_btn, self.watch]
        self.start_btn.click(self.on_start, inputs_kwargs=kw, outputs=self.notice_box, api_name="start_training")
        self.stop_btn.click(self.on_stop, inputs=[self.lang_box], outputs=self.notice_box, api_name="stop_training")
        pv = {k: kw[k] for k in ("model", "data_kind", "hub_dataset", "upload", "max_seq_length", "too_long",
                                 "max_rows", "split", "lang")}
        self.preview_btn.click(self.on_preview, inputs_kwargs=pv, outputs=self.preview, api_name="preview_data")
        self.export_btn.click(self.on_export, inputs_kwargs=kw,
                              outputs=[self.export_file, self.notice_box], api_name="export_settings")
        self.import_out = import_out = [self.model, self.data_kind, self.hub, self.mode, *self.widgets.values(), self.notice_box]
        self.import_file.upload(self.on_import, inputs=[self.import_file, self.lang_box], outputs=import_out,
                                api_name="import_settings")
        # a reload (or a second reviewer) sees the running run's settings, not the defaults
        Context.root_block.load(self.on_page_load, inputs=[self.lang_box], outputs=import_out,
                                api_visibility="private", show_progress="hidden")
        self.push_btn.click(self.on_push, inputs=[self.push_repo, self.push_private, self.lang_box],
                            outputs=self.notice_box, api_name="push_to_hub")
        self.data_kind.change(lambda k: (gr.update(visible=k == "hub"), gr.update(visible=k == "upload"),
                                         gr.update(visible=k == "hub")),
                              inputs=self.data_kind, outputs=[self.hub, self.upload, self.widgets["split"]],
                              api_visibility="private")
        self.mode.change(lambda m: (gr.update(visible=m == "steps"), gr.update(visible=m == "epochs")),
                         inputs=self.mode, outputs=[self.widgets["max_steps"], self.widgets["num_train_epochs"]],
                         api_visibility="private")
        w = self.widgets
        batch = [w["per_device_train_batch_size"], w["gradient_accumulation_steps"]]
        w["preset"].input(self.on_preset, inputs=[w["preset"], *batch], outputs=[w[f] for f in PRESET_FIELDS],
                          api_visibility="private")
        timer = gr.Timer(POLL_S)
        # the tick also says in the notice area when a run this page saw going has ended (no "stop requested" left)
        timer.tick(self.on_tick, inputs=[self.shown, self.lang_box], outputs=[*status_out, self.notice_box],
                   show_progress="hidden",
                   api_visibility="private", concurrency_limit=None)
        Context.root_block.load(self.on_status, inputs=[self.lang_box], outputs=status_out,
                                api_name="training_status", show_progress="hidden", concurrency_limit=None)

    def on_start(self, *, lang: str, model: str, data_kind: str, hub_dataset: str, length_mode: str,
                 upload: str | None = None, **values: Any) -> str:
        cfg = None
        try:
            self.ws.limits.refuse_if_read_only()
            cfg, problems = form.parse_values(values, model, length_mode)
            if problems:  # with the settings' other problems: one refusal lists every one
                parsed = {p.field for p in problems}
                raise SettingsError(problems + [p for p in self.ws.training.problems(cfg) if p.field not in parsed])
            cfg.data.source = form.data_source(data_kind, hub_dataset, upload, self.ws.uploads.store, lang)
            job = self.ws.training.start(cfg)
        except BusyError as exc:
            self.ws.uploads.release(cfg and cfg.data.source)  # a refused start keeps no upload
            key = {"generation": "train.busy_generating", "finishing": "train.busy_finishing"}.get(exc.by, "train.busy")
            return self.notice(tr(key, lang, msg=exc))
        except ValueError as exc:
            self.ws.uploads.release(cfg and cfg.data.source)
            return self.notice(tr("train.refused", lang, msg=exc))
        logger.info("training started from the UI: %s", job.run_dir)
        return tr("train.started", lang, run=job.run_dir.name)

    def on_stop(self, lang: str) -> str:
        kept = self.ws.training.stop()
        key = {"adapter": "train.stop_sent", "no_adapter": "train.stop_sent_no_adapter"}.get(kept or "", "train.nothing_to_stop")
        return tr(key, lang)

    def on_preview(self, *, lang: str, model: str, data_kind: str, hub_dataset: str, max_seq_length: float,
                   too_long: str, split: str, upload: str | None = None, max_rows: float | None = None) -> str:
        cfg = None
        try:
            if data_kind != "sample":  # read-only: no uploads, and no Hub dataset downloaded to this disk
                self.ws.limits.refuse_if_read_only()
            self.ws.limits.check_model_allowed(model)
            cfg = form.values_to_config({"max_seq_length": max_seq_length, "too_long": too_long,
                                         "max_rows": max_rows, "split": split}, model)
            cfg.data.source = form.data_source(data_kind, hub_dataset, upload, self.ws.uploads.store, lang)
            # the preview's settings are checked as Start checks them (a negative max_rows sliced rows off the end)
            problems = [p for p in check(cfg, "data", "model") + self.ws.limits.run_problems(cfg)
                        if p.field.startswith(("data.", "model.max_seq", "model.name"))]
            if problems:
                raise ValueError("; ".join(map(str, problems)))
            pv = preview_data(cfg.data, cfg.model.name, cfg.model.max_seq_length)
        except ValueError as exc:
            self.ws.uploads.release(cfg and cfg.data.source)  # an unreadable upload is not kept
            return self.notice(tr("train.preview_failed", lang, msg=exc))
        return form.preview_markdown(pv, lang)

    def on_export(self, *, lang: str, model: str, data_kind: str, hub_dataset: str, length_mode: str,
                  upload: str | None = None, **values: Any) -> tuple[Any, str]:
        try:
            cfg = form.values_to_config(values, model, length_mode)
            cfg.data.source = form.data_source(data_kind, hub_dataset, upload, self.ws.uploads.store, lang)
        except ValueError as exc:
            return None, self.notice(str(exc))
        if self.ws.limits.read_only:  # read-only mode writes no files: the settings are on the page to copy
            return None, self.notice(tr("train.export_read_only", lang))
        if Path(cfg.data.source).is_absolute():  # a stored upload: its name only (importing asks to upload it again)
            cfg.data.source = Path(cfg.data.source).name
        try:
            path = save_config(cfg, self.ws.exports.new("settings") / "kft-run.yaml")
        except OSError as exc:  # a full disk: kft's words, not "[Errno 28] ..."
            return None, self.notice(f"{tr('train.export_btn', lang)}: {os_reason(exc)}")
        return str(path), tr("train.exported", lang)

    def on_import(self, path: str | None, lang: str) -> dict[Any, Any]:
        if not path:
            return self.unchanged(self.import_out)
        try:
            cfg = load_config(path)
        except ValueError as exc:
            return {**self.unchanged(self.import_out), self.notice_box: self.notice(str(exc))}
        notes = [tr("train.imported", lang, name=Path(path).name)]
        if form.kind_of(cfg.data.source)[0] == "upload":
            notes.append(tr("train.reupload", lang, src=Path(cfg.data.source).name))
        problems = check(cfg)
        if problems:
            notes += [tr("train.import_problems", lang), *[f"- {p}" for p in problems]]
        return {**self._form_values(cfg), self.notice_box: "\n".join(notes)}

    def _form_values(self, cfg: RunConfig) -> dict[Any, Any]:
        """The form's widgets (model, data kind, Hub id, length mode, every setting) showing cfg."""
        kind, hub = form.kind_of(cfg.data.source)
        values = form.config_to_values(cfg)
        return {self.model: cfg.model.name, self.data_kind: kind, self.hub: hub, self.mode: form.length_mode_of(cfg),
                **{w: values[n] for n, w in self.widgets.items()}}

    def on_page_load(self, lang: str) -> dict[Any, Any]:
        """On page load during a run: fill the form with that run's settings; otherwise leave it."""
        job = self.ws.training.job
        if job is None or job.done:
            return self.unchanged(self.import_out)
        return {**self._form_values(job.config), self.notice_box: tr("train.attached", lang, run=job.run_dir.name)}

    def on_preset(self, name: str, batch: Any, accumulation: Any) -> tuple[Any, ...]:
        try:
            return form.preset_values(name, batch, accumulation)
        except (ValueError, TypeError):
            return tuple(gr.skip() for _ in PRESET_FIELDS)

    def on_push(self, repo_id: str, private: bool, lang: str) -> str:
        try:
            url = self.ws.training.push_adapter(repo_id or "", bool(private))
        except ValueError as exc:
            return self.notice(tr("train.push_failed", lang, msg=exc))
        return tr("train.pushed", lang, url=url)

    def _zip_for(self, snap: Any) -> str | None:
        if snap is None or snap.status not in ("completed", "stopped") or self.ws.limits.read_only:
            return None  # read-only mode builds and copies no zip (it writes no files)
        try:
            return str(servable_copy(self.ws.training.adapter_zip(), self.ws.exports))
        except (ExportError, ValueError, OSError) as exc:
            logger.debug("no adapter zip for %s: %s", snap.run_dir, exc)  # polled every 2 s: not a warning each time
            return None

    def on_status(self, lang: str) -> dict[Any, Any]:
        """Everything the progress and result boxes show, rendered from one snapshot (once per step: see _rendered)."""
        snap = self.ws.training.snapshot()
        shown = self._parts(snap, lang)
        return {**{self._boxes()[name]: value for name, value in self._rendered(snap, lang).items()},
                self.shown: shown, **self._buttons(snap)}

    def _boxes(self) -> dict[str, Any]:
        return {"summary": self.summary, "status": self.status, "progress": self.progress, "loss": self.loss_plot,
                "lr": self.lr_plot, "memory": self.mem_plot, "log": self.log, "report": self.report,
                "run_dir": self.run_dir, "zip": self.zip, "watch": self.watch}

    def _rendered(self, snap: Any, lang: str) -> dict[str, Any]:
        """The boxes' values for this snapshot, rendered once and shared by every page that polls (keyed by the
        snapshot's signature: a new step renders once, not once per viewer)."""
        key = plots.signature(snap, lang)
        with self._render_lock:
            hit = self._render_cache.get(key)
            if hit is not None:
                return hit
            summary = {k: self.for_page(v) if isinstance(v, str) else v for k, v in plots.summary(snap).items()}
            values = {"summary": summary, "status": self.for_page(plots.status_markdown(snap, lang)),
                      "progress": plots.progress_html(snap), "loss": plots.chart(plots.loss_frame(snap, lang)),
                      "lr": plots.chart(plots.lr_frame(snap)), "memory": plots.chart(plots.memory_frame(snap, lang)),
                      "log": self.for_page(plots.log_text(snap)), "report": plots.report_text(snap, lang),
                      "run_dir": self.for_page(snap.run_dir) if snap else "", "zip": self._zip_for(snap),
                      "watch": plots.watch_html(snap, lang)}
            self._render_cache[key] = values
            while len(self._render_cache) > RENDER_CACHE:  # the newest few (a step in each language)
                self._render_cache.pop(next(iter(self._render_cache)))
            return values

    def _buttons(self, snap: Any) -> dict[Any, Any]:
        """Start only while no run goes (and training is allowed here), Stop only while one does."""
        going = self.ws.training.active and snap is not None and not snap.finished  # not a run read from disk
        return {self.start_btn: gr.update(interactive=not going and not self.ws.limits.read_only),
                self.stop_btn: gr.update(interactive=going, variant="stop" if going else "secondary")}

    def on_tick(self, shown: Any, lang: str) -> dict[Any, Any]:
        """Like on_status, but sends only the boxes whose content changed since this page's last update, and
        nothing at all when nothing changed (a poll that finds nothing new sends nothing new)."""
        snap = self._tick_snapshot()
        now = self._parts(snap, lang)
        before = shown if isinstance(shown, dict) else {}
        if now == before:
            return self.unchanged([*self.status_out, self.notice_box])
        values = self._rendered(snap, lang)
        out = {box: values[name] if now[name] != before.get(name) else gr.skip()
               for name, box in self._boxes().items()}
        buttons = self._buttons(snap) if now["buttons"] != before.get("buttons") else self.unchanged(
            [self.start_btn, self.stop_btn])
        ended = before.get("buttons") == "True" and now["buttons"] == "False" and snap is not None
        notice = (tr(f"train.ended_{snap.status}", lang, run=Path(str(snap.run_dir)).name, step=snap.step)
                  if ended and snap.status in ("stopped", "completed") else gr.skip())
        return {**out, self.shown: now, **buttons, self.notice_box: notice}

    def _tick_snapshot(self) -> Any:
        """The snapshot every page's tick shows: while a run trains, one a poll interval, shared by all pages. Steps
        come faster than a page polls, so with a fresh snapshot each tick every page would find a new step and render
        it: one render per viewer. Shared, the pages render once per interval however many are open (a page sees a
        step at most one interval later); a new run or a run that ended is seen at once."""
        now, job = time.monotonic(), self.ws.training.job
        with self._render_lock:
            held = self._held
        if held is not None and held[1] is job and job is not None and not job.done and now - held[0] < POLL_S:
            return held[2]
        snap = self.ws.training.snapshot()
        with self._render_lock:
            self._held = (now, job, snap)
        return snap

    def _parts(self, snap: Any, lang: str) -> dict[str, str]:
        going = self.ws.training.active and snap is not None and not snap.finished
        return {**plots.parts(snap, lang), "buttons": str(going)}
