"""The comparison tab: one prompt to base and LoRA, both answers streamed side by side, and the safety scorecard.

Event wiring only. Endpoints (stable api_names): /compare, /stop_generation, /scorecard, /list_adapters."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from ..config.args import MAX_NEW_TOKENS_CAP, MAX_PROMPT_CHARS, GenerationArgs
from ..config.files import parse_number
from ..inference.generate import PromptError
from ..inference.safety import Scorecard, load_prompt_set
from ..models.loading import ModelLoadError
from ..services import BusyError
from ..services.comparison import AdapterChoice, CardProgress
from ..training.memory import free_unused
from . import compare_view as view
from .plots import chart
from .strings import tr
from .tab import Tab
from .train_form import parse_flag

logger = logging.getLogger(__name__)
_USER_ERRORS = (PromptError, ModelLoadError, BusyError, ValueError)
PANE_NAMES = ("base", "base_info", "lora", "lora_info", "lora_b", "lora_b_info")


def _choice(source: str, run: str | None, hub: str | None) -> AdapterChoice:
    ref = (run or "") if source == "run" else (hub or "").strip() if source == "hub" else ""
    return AdapterChoice(source or "trained", ref)


def _gen_args(max_new_tokens: Any, do_sample: Any, temperature: Any, top_p: Any,
              repetition_penalty: Any) -> GenerationArgs:
    """The decoding settings as sent; one ValueError naming each value that is not of its type (bounds: the service)."""
    kinds = {"max_new_tokens": int, "temperature": float, "top_p": float, "repetition_penalty": float}
    sent = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
            "repetition_penalty": repetition_penalty}
    parsed: dict[str, Any] = {}
    problems = []
    for name, value in sent.items():
        try:
            parsed[name] = parse_number(value, kinds[name])
        except ValueError as exc:
            problems.append(f"{name} {exc}")
    try:
        parsed["do_sample"] = parse_flag(do_sample)
    except ValueError as exc:
        problems.append(f"do_sample {exc}")
    if problems:
        raise PromptError("; ".join(problems))
    return GenerationArgs(**parsed)


def stop_button(running: bool) -> Any:
    """A Stop button is enabled (and red) only while its work runs."""
    return gr.update(interactive=running, variant="stop" if running else "secondary")


class CompareTab(Tab):
    """The tab's layout and event handlers; each handler turns plain data from the service into values."""

    id = "compare"

    @property
    def service(self) -> Any:
        return self.ws.comparison

    def _error(self, exc: Exception, lang: str) -> gr.Error:
        run = self.ws.slot.training_run
        return self.error(tr("compare.busy_training", lang, run=run) if run else tr("compare.bad_request", lang, e=exc),
                          lang)

    def _out_of_memory(self, lang: str) -> gr.Error:
        """Out of GPU memory while generating: free the caches, keep the model, say what to lower."""
        free_unused()
        logger.warning("out of memory during a generation")
        return self.error(tr("compare.out_of_memory", lang), lang)

    def _refuse_if_training(self, lang: str) -> None:
        # the slot names the run from the moment it claims the GPU, before the service records the new job
        run = self.ws.slot.training_run or (self.ws.training.job.run_dir.name if self.ws.training.active else None)
        if run:
            raise self.error(tr("compare.busy_training", lang, run=run), lang)

    def compare(self, instruction: str, input_: str, source: str, run: str | None, hub: str | None,
                max_new_tokens: float, do_sample: bool, temperature: float, top_p: float,
                repetition_penalty: float, lang: str) -> Iterator[tuple[str, str, str, str, str]]:
        """Stream both answers; a newer request, Stop, or a closed browser tab ends it within a token.
        Times to first token count from here, the request (a first use's adapter load included)."""
        t0 = time.perf_counter()
        self._refuse_if_training(lang)
        cancel = threading.Event()
        try:  # the service checks the request at the call, before the first update
            gen = _gen_args(max_new_tokens, do_sample, temperature, top_p, repetition_penalty)
            stream = self.service.stream(_choice(source, run, hub), instruction, input_ or "", gen, cancel, t0=t0)
        except PromptError as exc:
            raise self._error(exc, lang) from exc
        try:
            yield self._named({"base": "", "base_info": "", "lora": "", "lora_info": "",
                               "outcome": tr("compare.running", lang)})
            for update in stream:
                shown = update.origin.adapter if update.origin is not None else None
                yield {**self._named(view.render_update(update, lang)), self.shown_panes: shown}
        except _USER_ERRORS as exc:
            raise self._error(exc, lang) from exc
        except torch.OutOfMemoryError as exc:
            raise self._out_of_memory(lang) from exc
        finally:  # runs when gradio closes the generator (client gone, /cancel) as well as at the end
            cancel.set()
            stream.close()

    def compare_panes(self, instruction: str, input_: str, source: str, run: str | None, hub: str | None,
                      run_b: str | None, max_new_tokens: float, do_sample: bool, temperature: float, top_p: float,
                      repetition_penalty: float, lang: str) -> Iterator[dict[Any, Any]]:
        """The Generate button: base and the chosen adapter, plus a third pane for a second run when one is chosen
        (every row in one batch: ComparisonService.stream_runs)."""
        if not run_b:
            for values in self.compare(instruction, input_, source, run, hub, max_new_tokens, do_sample,
                                       temperature, top_p, repetition_penalty, lang):
                yield {**values, self.c["lora_b"]: "", self.c["lora_b_info"]: ""}
            return
        t0 = time.perf_counter()
        self._refuse_if_training(lang)
        cancel = threading.Event()
        try:
            gen = _gen_args(max_new_tokens, do_sample, temperature, top_p, repetition_penalty)
            stream = self.service.stream_runs([_choice(source, run, hub), AdapterChoice("run", run_b)], instruction,
                                              input_ or "", gen, cancel, t0=t0)
        except PromptError as exc:
            raise self._error(exc, lang) from exc
        try:
            yield self._named({n: "" for n in PANE_NAMES} | {"outcome": tr("compare.running", lang)})
            for update in stream:
                shown = update.origins[1].adapter if update.origins[1] is not None else None
                yield {**self._named(view.render_rows(update, lang)), self.shown_panes: shown}
        except _USER_ERRORS as exc:
            raise self._error(exc, lang) from exc
        except torch.OutOfMemoryError as exc:
            raise self._out_of_memory(lang) from exc
        finally:
            cancel.set()
            stream.close()

    def stop_if_idle(self) -> Any:
        """After a generation or scorecard (done, stopped or refused): its Stop stays on only while a newer one runs."""
        return stop_button(self.ws.slot.generating)

    def stop(self, lang: str) -> str:
        return tr("compare.stopped" if self.service.stop() else "compare.nothing_to_stop", lang)

    def scorecard(self, prompt_set: str, upload: str | None, source: str, run: str | None, hub: str | None,
                  max_new_tokens: float, do_sample: bool, temperature: float, top_p: float,
                  repetition_penalty: float, lang: str) -> Iterator[tuple[Any, ...]]:
        """Run the prompt set through base and LoRA; yield progress, then the table, charts and exports."""
        yield from self.scorecard_runs(prompt_set, upload, source, run, hub, "", max_new_tokens, do_sample,
                                       temperature, top_p, repetition_penalty, lang)

    def scorecard_runs(self, prompt_set: str, upload: str | None, source: str, run: str | None, hub: str | None,
                       run_b: str | None, max_new_tokens: float, do_sample: bool, temperature: float, top_p: float,
                       repetition_penalty: float, lang: str) -> Iterator[tuple[Any, ...]]:
        """The Run scorecard button: base and the chosen adapter, and run B as well when a second run is chosen (the
        same prompts in the same batches: ComparisonService.scorecard with choice_b)."""
        self._refuse_if_training(lang)
        if prompt_set == "upload" and not upload:
            raise self.error(tr("compare.need_upload", lang), lang)
        choice = _choice(source, run, hub)
        try:
            gen = _gen_args(max_new_tokens, do_sample, temperature, top_p, repetition_penalty)
            prompts = load_prompt_set(upload if prompt_set == "upload" else "presets")
        except ValueError as exc:
            raise self._error(exc, lang) from exc
        cancel = threading.Event()
        runner = self.service.scorecard(choice, prompts, gen, cancel, AdapterChoice("run", run_b) if run_b else None)
        try:
            yield self._card_outputs(CardProgress(Scorecard(), len(prompts), batch=self.service.scorecard_batch()),
                                     lang, None)
            for _ in runner:  # a row done: the bar, the table and the charts grow with it
                yield self._card_outputs(self.service.last_card, lang)
        except _USER_ERRORS as exc:
            raise self._error(exc, lang) from exc
        except torch.OutOfMemoryError as exc:
            raise self._out_of_memory(lang) from exc
        finally:
            cancel.set()
            runner.close()
        progress = self.service.last_card
        card, stopped, origin = progress.card, progress.stopped, progress.origin
        origin_b = progress.origin_b
        meta = {"adapter": choice.describe(), "adapter_run": origin.adapter if origin else None,
                **({"adapter_run_b": origin_b.adapter} if origin_b else {}),
                "base_model": origin.base if origin else None,
                "prompt_set": Path(upload).name if prompt_set == "upload" and upload else "presets",
                "prompts_total": len(prompts), "prompts_scored": len(card.rows),
                "stopped": stopped,  # a partial card says so in the file too
                "generation": dataclasses.asdict(gen),
                "created": origin.made if origin else time.strftime("%Y-%m-%d %H:%M:%S")}
        writes = card.rows and not self.ws.limits.read_only  # read-only mode writes no files: the table is the result
        files = view.write_exports(card, meta, self.ws.exports.new("scorecards")) if writes else None
        yield self._card_outputs(progress, lang, files)

    def _named(self, values: dict[str, Any]) -> dict[Any, Any]:
        """Updates keyed by component, from values keyed by the component's name in ``self.c``."""
        return {self.c[name]: value for name, value in values.items()}

    def _card_outputs(self, progress: CardProgress, lang: str, *files: Any) -> dict[Any, Any]:
        """The scorecard's bar, summary, table and charts, and its export files when given."""
        card, origin = progress.card, progress.origin  # the summary names the adapter that made the table and charts
        values = {**self._card_texts(progress, lang), "table": view.scorecard_table(card, lang),
                  "plot_harmful": chart(view.rate_frame(card, "harmful", lang)),
                  "plot_benign": chart(view.rate_frame(card, "benign", lang))}
        out = self._named({**values, **({"files": files[0]} if files else {})})
        return {**out, self.shown_card: origin.adapter if origin is not None else None}

    @staticmethod
    def _card_texts(progress: CardProgress, lang: str) -> dict[str, str]:
        return {"sc_progress": view.progress_html(progress.done, progress.total, progress.eta_s, lang, progress.batch,
                                                  progress.finished, progress.elapsed_s),
                "sc_summary": view.scorecard_summary(progress.card, lang, progress.total, progress.stopped,
                                                     progress.origin, progress.origin_b)}

    def cleared_if_stale(self, source: str, run: str | None, hub: str | None, panes_from: str | None,
                         card_from: str | None, lang: str) -> dict[Any, Any]:
        """Results on this page made by another adapter than the one chosen now are cleared, with a line saying
        whose they were: the panes, and the scorecard (summary, bar, charts, table, files)."""
        now = self.service.current_label(_choice(source, run, hub))
        now_text = now or tr("compare.no_adapter_chosen", lang)
        out: dict[Any, Any] = self.unchanged(self._stale_outputs())
        if panes_from and panes_from != now:
            out.update(self._named({"base": "", "lora": "", "base_info": "", "lora_info": "", "lora_b": "", "lora_b_info": "",
                                    "outcome": tr("compare.stale_panes", lang, run=panes_from, now=now_text)}))
            out[self.shown_panes] = None
        if card_from and card_from != now:
            out.update(self._card_outputs(CardProgress(Scorecard(), 0), lang, None))
            out[self.c["sc_summary"]] = tr("compare.stale_card", lang, run=card_from, now=now_text)
            out[self.c["sc_progress"]] = ""
        return out

    def _stale_outputs(self) -> list[Any]:
        names = ("base", "base_info", "lora", "lora_info", "lora_b", "lora_b_info", "outcome", "sc_summary", "table", "plot_harmful",
                 "plot_benign", "files", "sc_progress")
        return [*(self.c[n] for n in names), self.shown_panes, self.shown_card]

    def _rerender(self, lang: str) -> dict[Any, Any]:
        """The messages on screen, in a new language: the last comparison's badges and outcome, the scorecard's
        bar, summary and table (kept by the service as plain data); nothing where nothing was shown yet."""
        out: dict[str, Any] = {}
        if self.service.last is not None:
            out.update({k: v for k, v in view.render_update(self.service.last, lang).items()
                        if k in ("base_info", "lora_info", "outcome")})
        if self.service.last_card is not None:
            out.update(self._card_texts(self.service.last_card, lang))
        else:
            out["sc_summary"] = gr.update(value=tr("compare.sc_empty", lang))
        return out

    def list_adapters(self, run: str | None) -> Any:
        runs = self.service.runs_with_adapter()
        return gr.update(choices=runs, value=run if run in runs else (runs[0] if runs else None))

    def on_load(self, run: str | None, lang: str) -> dict[Any, Any]:
        source = "trained" if self.service.trained_available() else "run"
        runs = self.service.runs_with_adapter()
        return {self.c["source"]: gr.update(value=source), self.c["run"]: self.list_adapters(run),
                self.c["run_b"]: gr.update(choices=["", *runs]),
                self.status_md: self.status(lang), self.follow: {"seen": self.service.trained_run(), "chose": False},
                **self._buttons()}

    def _buttons(self) -> dict[Any, Any]:
        """Generate and Run scorecard are disabled while a run trains (the status line says so)."""
        free = not (self.ws.slot.training_run or self.ws.training.active)
        return {self.c["generate"]: gr.update(interactive=free), self.c["run_scorecard"]: gr.update(interactive=free)}

    def status(self, lang: str, choice: AdapterChoice | None = None) -> str:
        chosen = self.service.current_label(choice) if choice is not None else None
        return view.status_line(self.service.status(), lang, chosen)

    def on_tick(self, follow: dict[str, Any], run: str | None, lang: str, source: str | None = None,
                hub: str | None = None) -> dict[Any, Any]:
        """The status line; and when a run has just left a new adapter, the adapter choice follows it (the
        just-trained adapter, and the newest run in the list) unless the user picked an adapter on this page."""
        choice = _choice(source, run, hub) if source else None
        out: dict[Any, Any] = {self.status_md: self.status(lang, choice), **self._buttons()}
        newest = self.service.trained_run()
        if newest is None or newest == (follow or {}).get("seen"):
            return {**out, self.c["source"]: gr.skip(), self.c["run"]: gr.skip(), self.follow: gr.skip()}
        chose = bool((follow or {}).get("chose"))
        out[self.follow] = {"seen": newest, "chose": chose}
        out[self.c["source"]] = gr.skip() if chose else gr.update(value="trained")
        runs = self.service.runs_with_adapter()
        out[self.c["run"]] = gr.update(choices=runs, value=run if chose and run in runs else newest)
        return out

    @staticmethod
    def on_user_choice(follow: dict[str, Any]) -> dict[str, Any]:
        """The user picked an adapter source or run: new runs no longer change it."""
        return {**(follow or {}), "chose": True}

    def build(self, lang: str) -> None:
        """Lay out the tab inside the current Blocks and wire its events (see the module docstring)."""
        self.status_md = self.relabel_with(gr.Markdown(self.status(lang), elem_id="kft-compare-status"),
                                           lambda lg: gr.update(value=self.status(lg)))
        self.follow = gr.State({"seen": None, "chose": False})  # plain data: which trained run the page has followed
        self.shown_panes = gr.State(None)  # plain data: the adapter (run or Hub id) whose answers this page shows
        self.shown_card = gr.State(None)  # ... and whose scorecard
        self.c = {**self._build_inputs(lang), **self._build_panes(lang), **self._build_scorecard(lang)}
        for name in ("base_info", "lora_info", "outcome", "sc_progress", "sc_summary"):
            self.relabel_with(self.c[name], lambda lg, n=name: self._rerender(lg).get(n, gr.skip()))
        self._wire()

    def _build_inputs(self, lang: str) -> dict[str, Any]:
        ws = self.ws
        runs = self.service.runs_with_adapter()
        c: dict[str, Any] = {}
        with gr.Row():
            with gr.Column(scale=2):
                self.label(gr.Markdown(tr("compare.adapter_heading", lang)), "compare.adapter_heading", "value")
                c["source"] = gr.Radio(view.source_choices(lang),
                                       value="trained" if self.service.trained_available() else "run",
                                       label=tr("compare.source", lang), elem_id="kft-source")
                self.relabel_with(c["source"], lambda lg: gr.update(label=tr("compare.source", lg),
                                                                    choices=view.source_choices(lg)))
                with gr.Row():
                    c["run"] = self.label(gr.Dropdown(runs, value=runs[0] if runs else "",
                                                      label=tr("compare.run", lang),
                                                      allow_custom_value=True,  # checked by the service
                                                      elem_id="kft-compare-run",
                                                      scale=4), "compare.run")
                    c["refresh"] = self.label(gr.Button(tr("compare.refresh", lang), scale=1, min_width=80),
                                              "compare.refresh", "value")
                c["hub"] = self.label(gr.Textbox(value="", label=tr("compare.hub", lang), placeholder="owner/name",
                                                 max_lines=1), "compare.hub")
                c["run_b"] = self.label(gr.Dropdown(["", *runs], value="", label=tr("compare.run_b", lang),
                                                    allow_custom_value=True,  # checked by the service
                                                    elem_id="kft-compare-run-b"), "compare.run_b")
            with gr.Column(scale=3):
                c["preset"] = gr.Dropdown(view.preset_choices(lang), value=None, label=tr("compare.preset", lang),
                                          elem_id="kft-preset-prompt")
                self.relabel_with(c["preset"], lambda lg: gr.update(label=tr("compare.preset", lg),
                                                                    choices=view.preset_choices(lg)))
                c["instruction"] = self.label(gr.Textbox(lines=3, label=tr("compare.instruction", lang),
                                                         max_length=MAX_PROMPT_CHARS, elem_id="kft-instruction"),
                                              "compare.instruction")
                c["input"] = self.label(gr.Textbox(value="", lines=2, label=tr("compare.input", lang)), "compare.input")
        cap, g = min(ws.limits.max_new_tokens, MAX_NEW_TOKENS_CAP), GenerationArgs()
        with self.label(gr.Accordion(tr("compare.gen_settings", lang), open=False, elem_id="kft-gen-settings"),
                        "compare.gen_settings"), gr.Row():
            c["max_new_tokens"] = self.label(gr.Slider(1, cap, value=min(g.max_new_tokens, cap), step=1,
                                                       label=tr("compare.max_new_tokens", lang),
                                                       elem_id="kft-max-new-tokens"), "compare.max_new_tokens")
            c["do_sample"] = self.label(gr.Checkbox(value=g.do_sample, label=tr("compare.do_sample", lang),
                                                    elem_id="kft-do-sample"), "compare.do_sample")
            # temperature and top-p act only when sampling: greyed out while it is off
            c["temperature"] = self.label(gr.Slider(0.05, 2.0, value=g.temperature, step=0.05, interactive=g.do_sample,
                                                    label=tr("compare.temperature", lang), elem_id="kft-temperature"),
                                          "compare.temperature")
            c["top_p"] = self.label(gr.Slider(0.05, 1.0, value=g.top_p, step=0.05, interactive=g.do_sample,
                                              label=tr("compare.top_p", lang), elem_id="kft-top-p"), "compare.top_p")
            c["repetition_penalty"] = self.label(gr.Slider(1.0, 2.0, value=g.repetition_penalty, step=0.05,
                                                           label=tr("compare.repetition_penalty", lang)),
                                                 "compare.repetition_penalty")
        return c

    def _build_panes(self, lang: str) -> dict[str, Any]:
        c: dict[str, Any] = {}
        with gr.Row():
            c["generate"] = self.label(gr.Button(tr("compare.generate", lang), variant="primary",
                                                 elem_id="kft-generate"), "compare.generate", "value")
            c["stop"] = self.label(gr.Button(tr("compare.stop", lang), variant="secondary", interactive=False,
                                             elem_id="kft-gen-stop"), "compare.stop", "value")
        with gr.Row(equal_height=True):
            for pane in ("base", "lora", "lora_b"):  # the third (run B) only while a second run is chosen
                with gr.Column(visible=pane != "lora_b", elem_id=f"kft-{pane}-column") as column:
                    # a fixed height (the text scrolls): the panes end level, so their badges line up
                    c[pane] = self.label(gr.Textbox(lines=12, max_lines=12, interactive=False, buttons=["copy"],
                                                    label=tr(f"compare.{pane}_pane", lang), elem_id=f"kft-{pane}"),
                                         f"compare.{pane}_pane")
                    c[f"{pane}_info"] = gr.Markdown(elem_id=f"kft-{pane}-info")
                c[f"{pane}_column"] = column
        c["outcome"] = gr.Markdown(elem_id="kft-outcome")
        c["compare_api"] = gr.Button(visible=False)  # carries the two-pane /compare endpoint
        return c

    def _build_scorecard(self, lang: str) -> dict[str, Any]:
        c: dict[str, Any] = {}
        with self.label(gr.Accordion(tr("compare.sc_heading", lang), open=True), "compare.sc_heading"):
            self.label(gr.Markdown(tr("compare.sc_intro", lang)), "compare.sc_intro", "value")
            with self.label(gr.Accordion(tr("compare.sc_refusal_heading", lang), open=False,
                                         elem_id="kft-refusal-definition"), "compare.sc_refusal_heading"):
                self.relabel_with(gr.Markdown(view.refusal_definition(lang), elem_id="kft-refusal-text"),
                                  lambda lg: gr.update(value=view.refusal_definition(lg)))
            with gr.Row():
                c["prompt_set"] = gr.Radio(view.prompt_set_choices(lang), value="presets",
                                           label=tr("compare.prompt_set", lang), elem_id="kft-prompt-set")
                self.relabel_with(c["prompt_set"], lambda lg: gr.update(label=tr("compare.prompt_set", lg),
                                                                        choices=view.prompt_set_choices(lg)))
                c["upload"] = self.label(gr.File(file_types=[".jsonl"], type="filepath",
                                                 label=tr("compare.upload", lang), elem_id="kft-sc-upload",
                                                 interactive=not self.ws.limits.read_only), "compare.upload")
            with gr.Row():
                c["run_scorecard"] = self.label(gr.Button(tr("compare.run_scorecard", lang), variant="primary",
                                                          elem_id="kft-run-scorecard"), "compare.run_scorecard",
                                                "value")
                c["stop_scorecard"] = self.label(gr.Button(tr("compare.stop", lang), variant="secondary",
                                                           interactive=False, elem_id="kft-sc-stop"),
                                                 "compare.stop", "value")
            c["sc_progress"] = gr.HTML(elem_id="kft-sc-progress-box")
            c["scorecard_api"] = gr.Button(visible=False)  # carries the two-way /scorecard endpoint
            c["sc_summary"] = gr.Markdown(tr("compare.sc_empty", lang), elem_id="kft-sc-summary")
            with gr.Row():
                empty = Scorecard()
                for label in ("harmful", "benign"):
                    plot = gr.BarPlot(chart(view.rate_frame(empty, label, lang)), x="bar", y="rate", color="model",
                                      y_lim=[0, 1], sort="-x", x_title=" ", label=tr(f"compare.plot_{label}", lang),
                                      color_title=tr("plot.legend_model", lang), height=240,
                                      elem_id=f"kft-plot-{label}")
                    c[f"plot_{label}"] = self.label_plot(plot, f"compare.plot_{label}", "plot.legend_model")
            c["table"] = gr.Dataframe(headers=view.table_headers(lang), wrap=True, interactive=False,
                                      column_widths=view.TABLE_WIDTHS, label=tr("compare.table", lang),
                                      elem_id="kft-sc-table")
            self.relabel_with(c["table"], self._relabel_table)
            exports = "compare.exports_read_only" if self.ws.limits.read_only else "compare.exports"
            c["files"] = self.label(gr.File(file_count="multiple", interactive=False, label=tr(exports, lang),
                                            elem_id="kft-sc-files"), exports)
        return c

    def _relabel_table(self, lang: str) -> Any:
        card = self.service.last_card
        rows = view.scorecard_table(card.card, lang) if card is not None else None
        three = card is not None and len(card.card.panes) == 3
        return gr.update(label=tr("compare.table", lang), headers=view.table_headers(lang, three),
                         **({"value": rows} if rows is not None else {}))

    def _wire(self) -> None:
        h, c, lang_box, status = self, self.c, self.lang_box, self.status_md
        adapter = [c["source"], c["run"], c["hub"]]
        gen = [c[k] for k in ("max_new_tokens", "do_sample", "temperature", "top_p", "repetition_penalty")]
        panes = [c["base"], c["base_info"], c["lora"], c["lora_info"], c["outcome"]]
        # each Stop is enabled while its work runs: on before the work, off after it (unless a newer request runs)
        quiet = dict(api_visibility="private", queue=False, show_progress="hidden")
        three = [c["base"], c["base_info"], c["lora"], c["lora_info"], c["lora_b"], c["lora_b_info"], c["outcome"]]
        # ... a refused request too: the page does not run .then after an event that failed, so .failure as well
        generating = h.stop_if_idle
        panes_event = gr.on([c["generate"].click, c["instruction"].submit], lambda: stop_button(True),
                            outputs=c["stop"], **quiet).then(
            h.compare_panes, inputs=[c["instruction"], c["input"], *adapter, c["run_b"], *gen, lang_box],
            outputs=[*three, h.shown_panes], api_name="compare_runs", show_progress="minimal")
        panes_event.then(generating, outputs=c["stop"], **quiet)
        panes_event.failure(generating, outputs=c["stop"], **quiet)
        # /compare (two panes) keeps its signature for API callers: an event of its own, on a hidden button
        c["compare_api"].click(h.compare, inputs=[c["instruction"], c["input"], *adapter, *gen, lang_box],
                               outputs=[*panes, h.shown_panes], api_name="compare", show_progress="minimal")
        c["run_b"].change(lambda b: gr.update(visible=bool(b)), inputs=c["run_b"], outputs=c["lora_b_column"],
                          **quiet)
        gr.on([c["stop"].click, c["stop_scorecard"].click], h.stop, inputs=lang_box, outputs=c["outcome"],
              api_name="stop_generation", queue=False)
        card = [c["sc_summary"], c["table"], c["plot_harmful"], c["plot_benign"], c["files"], c["sc_progress"],
                h.shown_card]  # the bar last: the API's first five stay in place
        card_event = c["run_scorecard"].click(lambda: stop_button(True), outputs=c["stop_scorecard"], **quiet).then(
            h.scorecard_runs, inputs=[c["prompt_set"], c["upload"], *adapter, c["run_b"], *gen, lang_box],
            outputs=card, api_name="scorecard_runs", show_progress="minimal")
        card_event.then(generating, outputs=c["stop_scorecard"], **quiet)
        card_event.failure(generating, outputs=c["stop_scorecard"], **quiet)
        # /scorecard (base and one adapter) keeps its signature for API callers, on a hidden button
        c["scorecard_api"].click(h.scorecard, inputs=[c["prompt_set"], c["upload"], *adapter, *gen, lang_box],
                                 outputs=card, api_name="scorecard", show_progress="minimal")
        c["refresh"].click(h.list_adapters, inputs=c["run"], outputs=c["run"], api_name="list_adapters")
        c["preset"].input(lambda p: p or gr.skip(), inputs=c["preset"], outputs=c["instruction"],
                          api_visibility="private", queue=False)
        c["do_sample"].change(lambda on: (gr.update(interactive=on), gr.update(interactive=on)), inputs=c["do_sample"],
                              outputs=[c["temperature"], c["top_p"]], api_visibility="private", queue=False,
                              show_progress="hidden")
        for widget in (c["source"], c["run"]):  # .input: the user's own pick, not the tick's
            widget.input(h.on_user_choice, inputs=h.follow, outputs=h.follow, api_visibility="private", queue=False,
                         show_progress="hidden")
        followed = [status, c["source"], c["run"], h.follow, c["generate"], c["run_scorecard"]]
        gr.Timer(2.0).tick(h.on_tick, inputs=[h.follow, c["run"], lang_box, c["source"], c["hub"]], outputs=followed,
                           api_visibility="private", queue=False, show_progress="hidden")
        # the adapter chosen changed (the user, the tick following a new run, the runs tab's "open"): results that
        # another adapter made are cleared; the tick checks too ("the adapter just trained" can name a new run)
        stale = dict(fn=h.cleared_if_stale, inputs=[*adapter, h.shown_panes, h.shown_card, lang_box],
                     outputs=self._stale_outputs(), api_visibility="private", queue=False, show_progress="hidden")
        gr.on([c["source"].change, c["run"].change, c["hub"].blur, c["hub"].submit, h.follow.change], **stale)
        self.check_stale = stale  # the runs tab chains it after "open in the comparison tab"
        root = gr.context.Context.root_block
        if root is not None:
            root.load(h.on_load, inputs=[c["run"], lang_box], outputs=[*followed, c["run_b"]],
                      api_visibility="private", queue=False, show_progress="hidden")
