"""ComparisonService: one prompt to the base model and to a LoRA adapter, both answers streamed side by side,
and the refusal scorecard over a prompt set. One generation at a time, on the GPU the ModelSlot holds.

An adapter (``AdapterChoice.source``) is ``trained`` (the training tab's, on the slot's model), ``run`` (a run
directory) or ``hub`` (a PEFT id on the Hub, safetensors only). Further adapters are added to the loaded base;
only an adapter of another base loads that base. A newer request cancels the running one. No gradio here.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.args import GenerationArgs, ModelArgs
from ..data.template import PromptTemplate
from ..inference.generate import PairUpdate, PaneStats, PromptError, SideBySideGenerator, prompt_problems
from ..inference.safety import Scorecard, iter_scorecard
from ..models.loading import LoadedModel, ModelLoadError, load_adapter, load_base, resolve_model_path, trained_base
from ..runs import store as runs
from ..runs.store import RunDir
from .limits import Limits
from .model_slot import ModelSlot
from .training import TrainingService

logger = logging.getLogger(__name__)
SOURCES = ("trained", "run", "hub")
MAX_SCORECARD_PROMPTS = 500
# prompts decoded together (each batch is one progress update); on the CPU a step costs about the same for 8 rows
# as for 26 (per-op overhead, not arithmetic), so 13 prompts a batch: the 39 presets in 3 batches, not 10
SCORECARD_BATCH, SCORECARD_BATCH_CPU = 16, 13
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")
HUB_FILES = ["adapter_config.json", "adapter_model.safetensors", "template.json", "README.md"]


@dataclass(frozen=True)
class AdapterChoice:
    """What the user picked: a source (trained | run | hub) and, for run and hub, which one."""

    source: str = "trained"
    ref: str = ""

    def describe(self) -> str:
        return "the adapter just trained" if self.source == "trained" else f"{self.source} {self.ref}"


@dataclass
class AdapterSource:
    """A choice resolved to where its weights are and which base model it needs."""

    key: str  # run directory or Hub id; ``ModelSlot.adapters`` maps names to it
    adapter_dir: Path | None  # folder with adapter_config.json (None: only on the loaded model)
    model: ModelArgs  # the base model the adapter was trained on


@dataclass
class CompareStatus:
    """Plain data for the tab's status line."""

    training: bool
    training_run: str | None
    generating: bool
    model: str | None
    adapters: list[str]  # the adapters on the model, as users know them: run names and Hub ids
    trained_available: bool
    base: str | None = None  # the base model's name alone (``model`` says how it runs)


@dataclass(frozen=True)
class Origin:
    """What produced a result: the adapter as users know it (a run name or a Hub id), its base model, and when."""

    adapter: str
    base: str
    made: str  # local time, "YYYY-MM-DD HH:MM:SS"

    def to_dict(self) -> dict[str, str]:
        return {"adapter": self.adapter, "base": self.base, "made": self.made}


def origin_of(source: AdapterSource) -> Origin:
    name = str(source.model.name)
    base = Path(name).name if Path(name).is_absolute() else name  # a local base by its folder name, no server path
    return Origin(adapter_label(source.key), base, time.strftime("%Y-%m-%d %H:%M:%S"))


@dataclass
class CardProgress:
    """The most recent scorecard as plain data: the rows done so far, of how many, the time taken, what made it."""

    card: Scorecard
    total: int
    elapsed_s: float = 0.0
    finished: bool = False
    origin: Origin | None = None
    batch: int = 0  # prompts decoded together (each batch is one progress update)
    origin_b: Origin | None = None  # run B's, on a three-way scorecard

    @property
    def done(self) -> int:
        return len(self.card.rows)

    @property
    def stopped(self) -> bool:
        return self.finished and self.done < self.total

    @property
    def eta_s(self) -> float | None:
        """Time left at the pace so far (None until a prompt is done)."""
        return self.elapsed_s / self.done * (self.total - self.done) if self.done else None


@dataclass
class RowsUpdate:
    """Answers of several rows for one request (base first, then each adapter) so far, with what made each."""

    texts: list[str]
    stats: list[PaneStats]
    origins: list[Origin | None]  # None for the base row
    done: bool = False
    cancelled: bool = False
    loading: bool = False


def adapter_label(key: str) -> str:
    """A user's name for an adapter's source key: the run's directory name, or the Hub id."""
    return key.removeprefix("hub:") if key.startswith("hub:") else Path(key).name


def _run_source(run: RunDir) -> AdapterSource:
    if not run.has_adapter:
        raise ModelLoadError(f"run {run.name} holds no saved adapter (adapter/adapter_config.json)")
    return AdapterSource(str(run.path.resolve()), run.adapter, trained_base(run.adapter))


def download_hub_adapter(repo_id: str) -> Path:
    """Fetch a PEFT adapter from the Hub (safetensors only: adapter_model.bin is a pickle) and return its folder."""
    if not HUB_ID.fullmatch(repo_id):
        raise ModelLoadError(f"{repo_id!r} is not a Hub id: expected owner/name, e.g. someone/llama31-ko-safety-lora")
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as exc:  # noqa: BLE001 - offline, missing, gated: one readable message
        raise ModelLoadError(f"Could not get adapter {repo_id!r} from the Hub: {str(exc)[:200]}. "
                             "This machine needs network access (and HF_TOKEN for a private adapter), "
                             "or the adapter in its Hugging Face cache.") from exc
    if not (path / "adapter_model.safetensors").is_file():
        raise ModelLoadError(f"{repo_id} has no adapter_model.safetensors: only safetensors adapters are loaded")
    return path


def same_base(loaded: LoadedModel, model: ModelArgs) -> bool:
    """Whether ``loaded`` is the base model ``model`` names (by name or by resolved local path)."""
    have = {str(loaded.name).lower(), str(loaded.path).lower()}
    if model.name.lower() in have:
        return True
    try:
        return resolve_model_path(model.name).lower() in have
    except ModelLoadError:
        return False


class ComparisonService:
    """One per Workspace: every browser tab and API caller shares it."""

    def __init__(self, runs_dir: Path, slot: ModelSlot, training: TrainingService, limits: Limits) -> None:
        self.runs_dir, self.slot, self.training, self.limits = runs_dir, slot, training, limits
        self._guard = threading.Lock()
        self._current: threading.Event | None = None
        self.last: PairUpdate | None = None  # the last update of the most recent comparison
        self.last_card: CardProgress | None = None  # the most recent scorecard (the page re-renders it)

    def scorecard_batch(self) -> int:
        """How many prompts the scorecard decodes together here (one progress update each)."""
        from ..system.hardware import has_cuda

        loaded = self.slot.loaded
        on_gpu = loaded.device.type == "cuda" if loaded is not None else has_cuda()
        return SCORECARD_BATCH if on_gpu else SCORECARD_BATCH_CPU

    def runs_with_adapter(self) -> list[str]:
        """Names of run directories that hold a saved adapter, newest first."""
        return runs.with_adapter(self.runs_dir)

    def trained_available(self) -> bool:
        """Whether the 'just trained' choice can be served (in memory, or the last run's adapter on disk)."""
        if self.slot.trained_key() is not None:
            return True
        job = self.training.job
        return job is not None and job.done and job.run.has_adapter

    def resolve(self, choice: AdapterChoice) -> AdapterSource:
        """Where the chosen adapter is and which base it needs; ModelLoadError says what is missing."""
        if choice.source == "trained":
            key, job = self.slot.trained_key(), self.training.job
            if key is not None:
                return AdapterSource(key, None, ModelArgs(name=self.slot.loaded.name))
            if self.trained_available():
                return _run_source(job.run)
            if job is not None and job.done:  # a run ended here, but without an adapter (failed, or stopped early)
                raise ModelLoadError(f"the last run ({job.run.name}) ended {job.snapshot().status} without saving "
                                     "an adapter: choose 'A run directory' and an earlier run, or train again")
            raise ModelLoadError("no adapter has been trained in this session yet: train one in the training tab, "
                                 "or pick a run directory")
        if choice.source == "run":
            if choice.ref not in self.runs_with_adapter():  # only names listed here: no paths from the client
                raise ModelLoadError(f"run {choice.ref!r} was not found under {self.runs_dir.name}/ (or holds no adapter)")
            return _run_source(RunDir(self.runs_dir / choice.ref))
        if choice.source == "hub":
            repo_id = choice.ref.strip()
            adapter_dir = download_hub_adapter(repo_id)
            return AdapterSource(f"hub:{repo_id}", adapter_dir, trained_base(adapter_dir))
        raise ModelLoadError(f"unknown adapter source {choice.source!r}; expected one of {SOURCES}")

    def _check_base(self, model: ModelArgs) -> None:
        """Checks before the model in memory is let go: a refused or missing base must not cost a reload."""
        from ..training.preflight import check_model_available

        try:
            self.limits.check_model_allowed(model.name)
            check_model_available(model.name)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc

    def _ready(self, source: AdapterSource) -> bool:
        """Whether the adapter and its base are in memory already (else the first request loads them)."""
        loaded = self.slot.loaded
        return loaded is not None and same_base(loaded, source.model) and source.key in self.slot.adapters.values()

    def _generator(self, source: AdapterSource) -> SideBySideGenerator:
        """A generator for this request only (call with the GPU held): nothing here keeps a model alive."""
        loaded = self.slot.loaded
        if loaded is None or not same_base(loaded, source.model):
            self._check_base(source.model)
        before = self.slot.loaded
        self.slot.ensure_base(lambda have: same_base(have, source.model), lambda: load_base(source.model))
        name = self.slot.ensure_adapter(source.key, source.adapter_dir, load_adapter)
        template_dir = source.adapter_dir or RunDir(source.key).adapter
        generator = SideBySideGenerator(self.slot.loaded, PromptTemplate.load(template_dir), adapter=name)
        if self.slot.loaded is not before:
            generator.warm_up()  # a new model: its kernels start here, while the pane still says "loading"
        return generator

    def current_label(self, choice: AdapterChoice) -> str | None:
        """The name (run or Hub id) the choice stands for now, without loading anything; None if it names none."""
        if choice.source == "trained":
            return self.trained_run()
        return choice.ref.strip() or None

    def trained_run(self) -> str | None:
        """The run whose adapter 'the adapter just trained' serves now, if any (the comparison tab follows it)."""
        key, job = self.slot.trained_key(), self.training.job
        if key is not None:
            return Path(key).name
        return job.run.name if self.trained_available() else None

    def status(self) -> CompareStatus:
        run, loaded = self.slot.training_run, self.slot.loaded
        return CompareStatus(run is not None, run, self.slot.generating, self.slot.describe(),
                             sorted(adapter_label(key) for key in self.slot.adapters.values()),
                             self.trained_available(), str(loaded.name) if loaded is not None else None)

    def check_request(self, instruction: str, input: str, gen: GenerationArgs) -> None:  # noqa: A002
        """Server-side checks that need no model: raise PromptError listing every problem."""
        problems = [str(p) for p in self.limits.generation_problems(gen)] + prompt_problems(instruction, input)
        if problems:
            raise PromptError("; ".join(problems))

    def stop(self) -> bool:
        """Stop the running generation or scorecard, if any."""
        with self._guard:
            if self._current is not None and not self._current.is_set():
                self._current.set()
                return True
        return False

    @contextlib.contextmanager
    def _turn(self, cancel: threading.Event) -> Iterator[bool]:
        """Stop the running request, then hold the GPU (yields False if cancelled while waiting)."""
        with self._guard:
            if self._current is not None:
                self._current.set()
            self._current = cancel
        with self.slot.generation(cancel) as got:
            yield got

    def stream(self, choice: AdapterChoice, instruction: str, input: str = "",  # noqa: A002
               gen: GenerationArgs | None = None, cancel: threading.Event | None = None,
               seed: int | None = None, t0: float | None = None) -> Iterator[PairUpdate]:
        """Both answers as they grow (close or set ``cancel`` to stop); panes share ``seed`` (None: new per request).
        A first update with ``loading`` set says the adapter (or its base) is being loaded; times to first token
        count from ``t0`` (``time.perf_counter()`` when the user asked; default: now), so they include the load."""
        t0 = time.perf_counter() if t0 is None else t0
        gen = gen or GenerationArgs()
        seed = secrets.randbelow(2**31) if seed is None else seed
        self.check_request(instruction, input, gen)  # at the call, before any update: a refusal comes at once
        return self._stream(choice, instruction, input, gen, cancel or threading.Event(), seed, t0)

    def _stream(self, choice: AdapterChoice, instruction: str, input: str, gen: GenerationArgs,  # noqa: A002
                cancel: threading.Event, seed: int, t0: float) -> Iterator[PairUpdate]:
        with self._turn(cancel) as got:
            if not got:
                yield PairUpdate(done=True, cancelled=True)
                return
            source = self.resolve(choice)
            origin = origin_of(source)
            if not self._ready(source):
                yield PairUpdate(loading=True, origin=origin)
            inner = self._generator(source).stream(instruction, input, gen, cancel=cancel, seed=seed, t0=t0)
            try:
                for update in inner:
                    update.origin = origin
                    self.last = update
                    yield update
            finally:
                inner.close()

    def stream_runs(self, choices: list[AdapterChoice], instruction: str, input: str = "",  # noqa: A002
                    gen: GenerationArgs | None = None, cancel: threading.Event | None = None,
                    seed: int | None = None, t0: float | None = None) -> Iterator[RowsUpdate]:
        """The base and every chosen adapter on one request, as rows of one batch (``stream_rows`` with adapters
        [None, "A", "B", ...]): every adapter goes onto the one base through the slot, under its own name. The
        adapters must share a base model; the prompt template is the first adapter's."""
        t0 = time.perf_counter() if t0 is None else t0
        gen = gen or GenerationArgs()
        seed = secrets.randbelow(2**31) if seed is None else seed
        self.check_request(instruction, input, gen)
        if not choices:
            raise PromptError("choose at least one adapter")
        return self._stream_runs(choices, instruction, input, gen, cancel or threading.Event(), seed, t0)

    def _stream_runs(self, choices: list[AdapterChoice], instruction: str, input: str,  # noqa: A002
                     gen: GenerationArgs, cancel: threading.Event, seed: int, t0: float) -> Iterator[RowsUpdate]:
        rows = len(choices) + 1
        with self._turn(cancel) as got:
            if not got:
                yield RowsUpdate([""] * rows, [PaneStats() for _ in range(rows)], [None] * rows, True, True)
                return
            sources = [self.resolve(c) for c in choices]
            origins = [None, *(origin_of(s) for s in sources)]
            if not all(self._ready(s) for s in sources):
                yield RowsUpdate([""] * rows, [PaneStats() for _ in range(rows)], origins, loading=True)
            generator = self._generator(sources[0])
            _one_base(self.slot.loaded, sources)
            names = [self.slot.ensure_adapter(s.key, s.adapter_dir, load_adapter) for s in sources]
            inner = generator.stream_rows(instruction, input, [None, *names], gen, cancel, seed, t0)
            try:
                for _adapters, panes, done, cancelled in inner:
                    yield RowsUpdate([p.text for p in panes], [PaneStats(**vars(p.stats)) for p in panes], origins,
                                     done, cancelled)
            finally:
                inner.close()

    def scorecard(self, choice: AdapterChoice, prompts: list[dict[str, Any]], gen: GenerationArgs,
                  cancel: threading.Event | None = None,
                  choice_b: AdapterChoice | None = None) -> Iterator[tuple[int, Scorecard]]:
        """Yield (prompts done, scorecard so far) after each batch of prompts; stops early when cancelled. With
        ``choice_b`` (run B) every prompt is answered by the base, run A and run B in the same batches, each row
        scored ("lora_b_answer", "lora_b_refusal"); run B must share run A's base, as in ``stream_runs``."""
        cancel = cancel or threading.Event()
        problems = [str(p) for p in self.limits.generation_problems(gen)]
        if len(prompts) > MAX_SCORECARD_PROMPTS:
            problems.append(f"the prompt set has {len(prompts)} prompts; the limit is {MAX_SCORECARD_PROMPTS}")
        if problems:
            raise PromptError("; ".join(problems))
        t0 = time.perf_counter()
        self.last_card = progress = CardProgress(Scorecard(), len(prompts), batch=self.scorecard_batch())
        try:
            with self._turn(cancel) as got:
                if not got:
                    return
                source = self.resolve(choice)
                progress.origin = origin_of(source)
                generator = self._generator(source)
                adapters = self._second_row(generator, source, choice_b, progress)
                _check_prompts(generator, prompts, gen)
                batch = progress.batch = self.scorecard_batch()
                for card in iter_scorecard(generator, prompts, gen, cancel, batch, adapters):
                    progress.card, progress.elapsed_s = card, time.perf_counter() - t0
                    yield len(card.rows), card
        finally:
            progress.finished = True


    def _second_row(self, generator: SideBySideGenerator, source: AdapterSource, choice_b: AdapterChoice | None,
                    progress: CardProgress) -> list[str | None] | None:
        """The scorecard's rows with run B: [None, A, B] (run B put onto the base in memory), or None for two."""
        if choice_b is None:
            return None
        other = self.resolve(choice_b)
        _one_base(self.slot.loaded, [source, other])
        progress.origin_b = origin_of(other)
        return [None, generator.adapter, self.slot.ensure_adapter(other.key, other.adapter_dir, load_adapter)]


def _one_base(loaded: LoadedModel, sources: list[AdapterSource]) -> None:
    """ModelLoadError when an adapter after the first was trained on another base than the one in memory."""
    others = [adapter_label(s.key) for s in sources[1:] if not same_base(loaded, s.model)]
    if others:
        raise ModelLoadError(f"{', '.join(others)} was trained on another base model than "
                             f"{adapter_label(sources[0].key)}: compare runs of one base model")


def _check_prompts(generator: SideBySideGenerator, prompts: list[dict[str, Any]], gen: GenerationArgs) -> None:
    """Every prompt must fit before any is run: PromptError names the rows that do not."""
    problems = []
    for i, p in enumerate(prompts, start=1):
        try:
            text = prompt_problems(p["prompt"], p.get("input", ""))
            if text:
                raise PromptError("; ".join(text))
            generator.encode(p["prompt"], p.get("input", ""), gen)
        except PromptError as exc:
            problems.append(f"prompt {i}: {exc}")
    if problems:
        raise PromptError(f"{len(problems)} prompt(s) cannot be run: " + "; ".join(problems[:10]))
