"""The comparison service behind the comparison tab: which adapter, one base model, one generation at a time.

An adapter comes from one of three places (``AdapterChoice.source``):

- ``trained``: the one the training tab just trained (``ws.loaded`` after the run, adapter ``default``);
- ``run``: a run directory under ``ws.runs_dir`` (its ``adapter/`` folder and ``run.json``);
- ``hub``: a PEFT adapter id on the Hugging Face Hub (safetensors only; the token comes from the environment).

The base model is loaded once and kept in ``ws.loaded``; each further adapter is added to it with
``kft.model.load_adapter`` under its own name. Only when the chosen adapter was trained on another
base model is that base loaded instead (the old one is released first). Every generation holds
``ws.gpu_lock`` (training refuses to start while it is held, and generation refuses while training
runs); a newer request sets the running one's cancel Event, which stops it within a token.
Nothing here imports gradio.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import MAX_NEW_TOKENS_CAP, GenerationArgs, ModelArgs, generation_problems
from .generate import PairUpdate, PromptError, SideBySideGenerator, prompt_problems
from .memory import free_unused
from .model import LoadedModel, ModelLoadError, load_adapter, load_base, resolve_model_path, trained_base
from .persistence import ADAPTER_CONFIG
from .prompts import PromptTemplate
from .safety import Scorecard, run_scorecard
from .workspace import Workspace

logger = logging.getLogger(__name__)
SOURCES = ("trained", "run", "hub")
TRAINED_ADAPTER = "default"
MAX_EXTRA_ADAPTERS = 3  # compared adapters kept on the model besides the just-trained one
MAX_SCORECARD_PROMPTS = 500
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

    key: str
    """Identity of the adapter (run directory or Hub id); ``ws.loaded_adapters`` maps names to it."""
    adapter_dir: Path | None
    """Folder with adapter_config.json (None: already on the loaded model and nowhere else)."""
    model: ModelArgs
    """The base model the adapter was trained on."""


@dataclass
class CompareStatus:
    """Plain data for the tab's status line."""

    training: bool
    training_run: str | None
    generating: bool
    model: str | None
    adapters: list[str]
    trained_available: bool


# ---- where adapters come from ---------------------------------------------------------------------
def list_runs(ws: Workspace) -> list[str]:
    """Names of run directories that hold a saved adapter, newest first."""
    runs = [p for p in ws.runs_dir.iterdir() if (p / ADAPTER_CONFIG).is_file()]
    runs.sort(key=lambda p: (p / ADAPTER_CONFIG).stat().st_mtime, reverse=True)
    return [p.name for p in runs]


def trained_available(ws: Workspace) -> bool:
    """Whether the 'just trained' choice can be served (in memory, or the last run's adapter on disk)."""
    if ws.loaded is not None and TRAINED_ADAPTER in ws.loaded_adapters:
        return True
    job = ws.job
    return job is not None and job.done and (Path(job.run_dir) / ADAPTER_CONFIG).is_file()


def _run_source(run_dir: Path) -> AdapterSource:
    adapter_dir = run_dir / "adapter"
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelLoadError(f"run {run_dir.name} holds no saved adapter (adapter/adapter_config.json)")
    return AdapterSource(str(run_dir.resolve()), adapter_dir, trained_base(adapter_dir))


def download_hub_adapter(repo_id: str) -> Path:
    """Fetch a PEFT adapter from the Hub (safetensors only: adapter_model.bin is a pickle) and return its folder."""
    if not HUB_ID.fullmatch(repo_id):
        raise ModelLoadError(f"{repo_id!r} is not a Hub id: expected owner/name, e.g. someone/llama31-ko-safety-lora")
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as exc:  # noqa: BLE001 - offline, missing, gated: one readable message
        raise ModelLoadError(f"Could not get adapter {repo_id!r} from the Hub: {type(exc).__name__}: {str(exc)[:200]}. "
                             "This machine needs network access (and HF_TOKEN for a private adapter), "
                             "or the adapter in its Hugging Face cache.") from exc
    if not (path / "adapter_model.safetensors").is_file():
        raise ModelLoadError(f"{repo_id} has no adapter_model.safetensors: only safetensors adapters are loaded")
    return path


def resolve_choice(ws: Workspace, choice: AdapterChoice) -> AdapterSource:
    """Where the chosen adapter is and which base it needs; ModelLoadError says what is missing."""
    if choice.source == "trained":
        if ws.loaded is not None and TRAINED_ADAPTER in ws.loaded_adapters:
            key = ws.loaded_adapters[TRAINED_ADAPTER]
            return AdapterSource(key, None, ModelArgs(name=ws.loaded.name))
        if trained_available(ws):
            return _run_source(Path(ws.job.run_dir))
        job = ws.job
        if job is not None and job.done:  # a run ended here, but without an adapter (failed, or stopped early)
            status = job.snapshot().status
            raise ModelLoadError(f"the last run ({Path(job.run_dir).name}) ended {status} without saving an "
                                 "adapter: choose 'A run directory' and an earlier run, or train again")
        raise ModelLoadError("no adapter has been trained in this session yet: train one in the training tab, "
                             "or pick a run directory")
    if choice.source == "run":
        if choice.ref not in list_runs(ws):  # only names listed here: no paths from the client
            raise ModelLoadError(f"run {choice.ref!r} was not found under {ws.runs_dir.name}/ (or holds no adapter)")
        return _run_source(ws.runs_dir / choice.ref)
    if choice.source == "hub":
        repo_id = choice.ref.strip()
        adapter_dir = download_hub_adapter(repo_id)
        return AdapterSource(f"hub:{repo_id}", adapter_dir, trained_base(adapter_dir))
    raise ModelLoadError(f"unknown adapter source {choice.source!r}; expected one of {SOURCES}")


# ---- the one loaded model ---------------------------------------------------------------------------
def same_base(loaded: LoadedModel, model: ModelArgs) -> bool:
    """Whether ``loaded`` is the base model ``model`` names (by name or by resolved local path)."""
    have = {str(loaded.name).lower(), str(loaded.path).lower()}
    if model.name.lower() in have:
        return True
    try:
        return resolve_model_path(model.name).lower() in have
    except ModelLoadError:
        return False


def _adapter_name(source: AdapterSource, taken: dict[str, str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", source.key.rsplit("/", 1)[-1])[:48] or "adapter"
    name, n = f"cmp_{stem}", 1
    while name in taken:
        n += 1
        name = f"cmp_{stem}_{n}"
    return name


def _make_room(ws: Workspace) -> None:
    """Unload the least recently used compared adapters beyond MAX_EXTRA_ADAPTERS (the just-trained one
    stays): on a share link every run a reviewer opens would otherwise stay on the GPU (about 170 MB
    each for r=16 on Llama 3.1 8B) until the next training run."""
    extra = [n for n in ws.loaded_adapters if n != TRAINED_ADAPTER]
    if len(extra) < MAX_EXTRA_ADAPTERS:
        return
    for name in extra[: len(extra) - MAX_EXTRA_ADAPTERS + 1]:
        ws.loaded.model.delete_adapter(name)
        del ws.loaded_adapters[name]
        logger.info("adapter %r unloaded to make room", name)
    free_unused()


def ensure_adapter(ws: Workspace, source: AdapterSource) -> str:
    """Put the adapter on ``ws.loaded`` (loading its base first if needed) and return its adapter name."""
    loaded = ws.loaded
    if loaded is None or not same_base(loaded, source.model):
        # every check before anything is released: a refused or missing base must not cost the model in
        # memory (the just-trained one, say) and the next user a full reload
        from .preflight import check_model_available

        try:
            ws.check_model_allowed(source.model.name)  # the workspace's check, as for training
            check_model_available(source.model.name)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
    if loaded is not None and not same_base(loaded, source.model):
        logger.info("adapter %s needs base %s; releasing %s", source.key, source.model.name, loaded.name)
        job = ws.job
        if job is not None and job.done and job.loaded is loaded:
            job.loaded = None  # the finished run's reference too, or the old weights stay in memory
        ws.release_model()
        loaded = None
    if loaded is None:
        logger.info("loading base model %s for the comparison", source.model.name)
        loaded = load_base(source.model)
        ws.loaded, ws.loaded_adapters = loaded, {}
    for name, key in list(ws.loaded_adapters.items()):
        if key == source.key:
            ws.loaded_adapters[name] = ws.loaded_adapters.pop(name)  # most recently used last
            return name
    if source.adapter_dir is None:
        raise ModelLoadError(f"adapter {source.key} is no longer loaded; pick it from the run directories")
    _make_room(ws)
    name = _adapter_name(source, ws.loaded_adapters)
    load_adapter(loaded, source.adapter_dir, name)
    ws.loaded_adapters[name] = source.key
    logger.info("adapter %s loaded as %r on %s", source.key, name, loaded.name)
    return name


def check_generation(gen: GenerationArgs, cap: int) -> list[str]:
    """Decoding problems, with this server's cap on new tokens."""
    problems = generation_problems(gen)
    limit = min(cap, MAX_NEW_TOKENS_CAP)
    if gen.max_new_tokens > limit and not any("max_new_tokens" in p for p in problems):
        problems.append(f"max new tokens {gen.max_new_tokens} is above this server's limit of {limit}")
    return problems


# ---- the service ---------------------------------------------------------------------------------------
class CompareService:
    """One per Workspace (``service_for``): every browser tab and API caller shares it."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._guard = threading.Lock()
        self._current: threading.Event | None = None
        self.last: PairUpdate | None = None
        """The last update of the most recent comparison (what it ended with)."""

    def status(self) -> CompareStatus:
        ws, job = self.ws, self.ws.job
        return CompareStatus(ws.training, job.run_dir.name if ws.training else None, ws.gpu_lock.locked(),
                             ws.loaded.describe() if ws.loaded is not None else None,
                             sorted(ws.loaded_adapters), trained_available(ws))

    def check_request(self, instruction: str, input: str, gen: GenerationArgs) -> None:  # noqa: A002
        """Server-side checks that need no model: raise PromptError listing every problem."""
        problems = check_generation(gen, self.ws.limits.max_new_tokens) + prompt_problems(instruction, input)
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
    def _slot(self, cancel: threading.Event) -> Iterator[bool]:
        """Stop the running request, then hold the GPU lock (yields False if cancelled while waiting)."""
        with self._guard:
            if self._current is not None:
                self._current.set()
            self._current = cancel
        got = self.ws.acquire_gpu(cancel)
        try:
            yield got
        finally:
            if got:
                self.ws.gpu_lock.release()

    def _generator(self, choice: AdapterChoice) -> SideBySideGenerator:
        """A generator for this request only: nothing here keeps a model alive once the workspace drops it."""
        source = resolve_choice(self.ws, choice)
        name = ensure_adapter(self.ws, source)
        template_dir = source.adapter_dir or Path(source.key) / "adapter"
        return SideBySideGenerator(self.ws.loaded, PromptTemplate.load(template_dir), adapter=name)

    def stream(self, choice: AdapterChoice, instruction: str, input: str = "",  # noqa: A002
               gen: GenerationArgs | None = None, cancel: threading.Event | None = None,
               seed: int | None = None) -> Iterator[PairUpdate]:
        """Both answers as they grow. Close the iterator or set ``cancel`` to stop within a token.

        With sampling, both panes share ``seed``; None draws a new one per request (a new click, a new sample).
        """
        gen = gen or GenerationArgs()
        seed = secrets.randbelow(2**31) if seed is None else seed
        cancel = cancel or threading.Event()
        self.check_request(instruction, input, gen)
        with self._slot(cancel) as got:
            if not got:
                yield PairUpdate(done=True, cancelled=True)
                return
            inner = self._generator(choice).stream(instruction, input, gen, cancel=cancel, seed=seed)
            try:
                for update in inner:
                    self.last = update
                    yield update
            finally:
                inner.close()

    def scorecard(self, choice: AdapterChoice, prompts: list[dict[str, Any]], gen: GenerationArgs,
                  cancel: threading.Event | None = None) -> Iterator[tuple[int, Scorecard]]:
        """Yield (prompts done, scorecard so far) after each prompt; stops early when cancelled."""
        cancel = cancel or threading.Event()
        problems = check_generation(gen, self.ws.limits.max_new_tokens)
        if len(prompts) > MAX_SCORECARD_PROMPTS:
            problems.append(f"the prompt set has {len(prompts)} prompts; the limit is {MAX_SCORECARD_PROMPTS}")
        if problems:
            raise PromptError("; ".join(problems))
        with self._slot(cancel) as got:
            if not got:
                return
            generator = self._generator(choice)
            _check_prompts(generator, prompts, gen)
            rows: list[dict[str, Any]] = []
            for i, prompt in enumerate(prompts):
                card = run_scorecard(generator, [prompt], gen, cancel=cancel)
                if cancel.is_set() or not card.rows:
                    break
                rows.extend(card.rows)
                yield i + 1, Scorecard(list(rows))


def _check_prompts(generator: SideBySideGenerator, prompts: list[dict[str, Any]], gen: GenerationArgs) -> None:
    """Every prompt must fit before any is run: PromptError names the rows that do not."""
    problems = []
    for i, p in enumerate(prompts, start=1):
        try:
            generator.encode(p["prompt"], p.get("input", ""), gen)
        except PromptError as exc:
            problems.append(f"prompt {i}: {exc}")
    if problems:
        raise PromptError(f"{len(problems)} prompt(s) cannot be run: " + "; ".join(problems[:10]))


_services: weakref.WeakKeyDictionary[Workspace, CompareService] = weakref.WeakKeyDictionary()
_services_lock = threading.Lock()


def service_for(ws: Workspace) -> CompareService:
    """The one CompareService of this Workspace."""
    with _services_lock:
        if ws not in _services:
            _services[ws] = CompareService(ws)
        return _services[ws]
