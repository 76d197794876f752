"""ModelSlot: the one owner of the model in memory, its adapters and the GPU; only it writes the loaded model.

A training run borrows the GPU (``claim_for_training``) and hands its model over when it saved an adapter
(``end_training``), so the comparison needs no second load. A generation holds the GPU through ``generation()``.
Dropping the slot's reference is what frees the weights: no one else keeps one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..models.loading import ModelLoadError
from ..training.memory import free_unused

logger = logging.getLogger(__name__)

TRAINED_ADAPTER = "default"
MAX_EXTRA_ADAPTERS = 3  # compared adapters kept on the model besides the just-trained one


class BusyError(RuntimeError):
    """The GPU/CPU is busy; ``by`` says with what in a word for a UI that words its own message
    ("training", "finishing": a run that ended and frees memory, or "generation")."""

    def __init__(self, message: str, by: str = "training") -> None:
        super().__init__(message)
        self.by = by


class ModelSlot:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the fields below; held only for moments
        self._gpu = threading.Lock()  # held by the one running generation
        self._loaded: Any | None = None
        self._adapters: dict[str, str] = {}  # adapter name -> source key, least recently used first
        self._training_run: str | None = None

    @property
    def loaded(self) -> Any | None:
        """The LoadedModel in memory (read it, never keep it: the slot frees it when it lets go)."""
        return self._loaded

    @property
    def adapters(self) -> dict[str, str]:
        """Adapter name -> where it came from (a run directory, "hub:<id>"), least recently used first."""
        return dict(self._adapters)

    @property
    def generating(self) -> bool:
        return self._gpu.locked()

    @property
    def training_run(self) -> str | None:
        """Name of the run that holds the GPU, if any."""
        return self._training_run

    def trained_key(self) -> str | None:
        """Where the just-trained adapter on the model came from (its run directory), if it is loaded."""
        return self._adapters.get(TRAINED_ADAPTER) if self._loaded is not None else None

    def describe(self) -> str | None:
        return self._loaded.describe() if self._loaded is not None else None

    def claim_for_training(self, run_name: str) -> None:
        """The GPU goes to a training run (refused while a generation runs); the model in memory is let go."""
        with self._lock:
            if self._training_run is not None:
                raise BusyError(f"a training run is already in progress ({self._training_run})")
            if self._gpu.locked():
                raise BusyError("a generation is running on the model; try again when it has finished", by="generation")
            self._training_run = run_name
            self._drop()
        free_unused()

    def end_training(self, job: Any) -> None:
        """Run by the job's thread before it is done (no comparison can load a 2nd base); a saved run's model stays."""
        model = job.take_model() if job is not None else None
        saved = job is not None and job.run.has_adapter and job.snapshot().status in ("completed", "stopped")
        with self._lock:
            self._training_run = None
            if model is not None and saved:  # stopped while loading: no adapter, the untrained LoRA must go
                self._loaded, self._adapters = model, {TRAINED_ADAPTER: str(job.run_dir)}
                logger.info("the model in memory is now the trained model of %s", job.run_dir)
        del model
        free_unused()

    @contextlib.contextmanager
    def generation(self, cancel: threading.Event | None = None, timeout_s: float = 600.0) -> Iterator[bool]:
        """Hold the GPU for one generation: False if ``cancel`` is set while waiting; BusyError if training or late."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self._training_run is not None:
                    raise BusyError(f"the GPU is busy training ({self._training_run}); "
                                    "generation is refused until the run ends")
                if self._gpu.acquire(blocking=False):
                    break
            if cancel is not None and cancel.is_set():
                yield False
                return
            if time.monotonic() > deadline:
                raise BusyError("another generation is still running on the model; try again in a moment",
                                by="generation")
            time.sleep(0.02)
        try:
            yield True
        finally:
            self._gpu.release()

    def ensure_base(self, same_base: Callable[[Any], bool], load: Callable[[], Any]) -> Any:
        """The base model (inside ``generation()``): the loaded one if ``same_base`` says so, else ``load()``'s."""
        if self._loaded is not None and same_base(self._loaded):
            return self._loaded
        if self._loaded is not None:
            logger.info("releasing %s for another base model", self._loaded.name)
            self.release()
        loaded = load()
        with self._lock:
            self._loaded, self._adapters = loaded, {}
        return loaded

    def ensure_adapter(self, key: str, adapter_dir: Path | None, load: Callable[[Any, Path, str], Any]) -> str:
        """The name of adapter ``key`` on the model, loaded with ``load(loaded, adapter_dir, name)`` if needed.
        LRU extras past MAX_EXTRA_ADAPTERS go: else each run a share link opens stays on the GPU (~170 MB each)."""
        with self._lock:
            for name, have in list(self._adapters.items()):
                if have == key:
                    self._adapters[name] = self._adapters.pop(name)  # most recently used last
                    return name
        if adapter_dir is None:
            raise ModelLoadError(f"adapter {key} is no longer loaded; pick it from the run directories")
        extra = [n for n in self._adapters if n != TRAINED_ADAPTER]
        for name in extra[: max(0, len(extra) - MAX_EXTRA_ADAPTERS + 1)]:
            self._loaded.model.delete_adapter(name)
            with self._lock:
                del self._adapters[name]
            logger.info("adapter %r unloaded to make room", name)
        if len(extra) >= MAX_EXTRA_ADAPTERS:
            free_unused()  # once, after the adapters made room
        name = _adapter_name(key, self._adapters)
        load(self._loaded, adapter_dir, name)
        with self._lock:
            self._adapters[name] = key
        logger.info("adapter %s loaded as %r on %s", key, name, self._loaded.name)
        return name

    def forget(self, key: str) -> None:
        """Adapter ``key`` (a run directory) leaves memory (its run is being deleted): a compared one is unloaded,
        the just-trained one takes the model with it. BusyError while a generation or a run holds the GPU."""
        if key not in self._adapters.values():
            return
        with self.generation(timeout_s=0.5):
            for name, have in list(self._adapters.items()):
                if have != key:
                    continue
                if name == TRAINED_ADAPTER:
                    self.release()
                    return
                self._loaded.model.delete_adapter(name)
                with self._lock:
                    del self._adapters[name]
        free_unused()

    def release(self) -> None:
        """Let the model go (and with it its memory)."""
        with self._lock:
            self._drop()
        free_unused()

    def _drop(self) -> None:
        self._loaded, self._adapters = None, {}


def _adapter_name(key: str, taken: dict[str, str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", key.rsplit("/", 1)[-1])[:48] or "adapter"
    name, n = f"cmp_{stem}", 1
    while name in taken:
        n += 1
        name = f"cmp_{stem}_{n}"
    return name
