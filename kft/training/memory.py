"""Memory figures: the seed's GPU report and samples over time (process RSS on CPU, labelled)."""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)
GB = 1024**3


@dataclass
class MemorySample:
    t: float
    allocated_gb: float
    reserved_gb: float


def _cuda() -> Any | None:
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def free_unused() -> None:
    """Return freed memory: collect garbage, hand CUDA's cached blocks back, and give the heap's free pages back
    to the system (glibc keeps them otherwise: a run over a large file left the process gigabytes bigger)."""
    import gc

    gc.collect()
    try:
        cuda = _cuda()
        if cuda:
            cuda.empty_cache()
    except Exception:  # noqa: BLE001 - freeing is best effort; callers are in clean-up paths
        pass
    trim_heap()


def trim_heap() -> bool:
    """Arrow's pool and glibc's malloc_trim(0): free memory back to the system; False where neither is available."""
    trimmed = False
    pyarrow = sys.modules.get("pyarrow")  # only if loaded: importing it to free memory would cost 60 MB
    if pyarrow is not None:
        try:
            pyarrow.default_memory_pool().release_unused()
            trimmed = True
        except Exception:  # noqa: BLE001 - best effort
            pass
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trimmed = bool(libc.malloc_trim(0)) or trimmed
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
    return trimmed


def memory_label() -> str:
    return "GPU memory (GB)" if _cuda() else "process memory, RSS (GB) - CPU, no GPU"


def sample() -> MemorySample:
    """Current memory: allocated/reserved on the GPU; on CPU the process RSS in both fields."""
    cuda = _cuda()
    if cuda:
        return MemorySample(time.time(), cuda.memory_allocated() / GB, cuda.memory_reserved() / GB)
    import psutil

    rss = psutil.Process().memory_info().rss / GB
    return MemorySample(time.time(), rss, rss)


def start_report() -> dict[str, Any]:
    """Figures taken before training (the seed prints GPU name, max memory and reserved at start)."""
    cuda = _cuda()
    if cuda:
        # a process-wide high-water mark: without a reset, a later run would report an earlier run's peak
        cuda.reset_peak_memory_stats()
        props = cuda.get_device_properties(0)
        return {"device": "cuda", "gpu_name": props.name, "max_memory_gb": round(props.total_memory / GB, 3),
                "start_reserved_gb": round(cuda.max_memory_reserved() / GB, 3)}
    import psutil

    report = {"device": "cpu", "gpu_name": None, "max_memory_gb": round(psutil.virtual_memory().total / GB, 3),
              "start_rss_gb": round(psutil.Process().memory_info().rss / GB, 3),
              "note": "no GPU: figures are the process's resident memory (RSS)"}
    report["peak_since_start"] = _reset_cpu_peak()  # else the peak is the process's lifetime peak
    return report


def _reset_cpu_peak() -> bool:
    """Reset the RSS high-water mark (Linux VmHWM, via /proc/self/clear_refs), as start_report does CUDA's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _vm_hwm_bytes() is not None
    except OSError:
        return False


def _vm_hwm_bytes() -> int | None:
    """The RSS high-water mark since the last reset (Linux VmHWM), or None where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def final_report(start: dict[str, Any], train_seconds: float) -> dict[str, Any]:
    """The seed's memory report: peak reserved, peak for training and their percentages."""
    report = dict(start)
    report["train_runtime_s"] = round(train_seconds, 2)
    cuda = _cuda()
    total = start["max_memory_gb"]
    if cuda and start.get("device") == "cuda":
        peak = round(cuda.max_memory_reserved() / GB, 3)
        for_training = round(peak - start["start_reserved_gb"], 3)
    else:
        since_start = bool(start.get("peak_since_start"))
        lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak_bytes = (_vm_hwm_bytes() if since_start else None) or lifetime
        peak = round(peak_bytes / GB, 3)
        for_training = round(peak - start.get("start_rss_gb", 0.0), 3)
        report["peak_label"] = ("peak RSS of the process since the run started (CPU)" if since_start
                                else "peak RSS over the process's lifetime (CPU; this system cannot reset it)")
    report.update({"peak_reserved_gb": peak, "peak_for_training_gb": for_training,
                   "peak_percent": round(peak / total * 100, 3) if total else None,
                   "training_percent": round(for_training / total * 100, 3) if total else None})
    return report


REPORT_LINES: dict[str, str] = {
    "gpu": "GPU = {gpu_name}. Max memory = {max_memory_gb} GB.",
    "gpu_start": "{start_reserved_gb} GB of memory reserved at start.",
    "cpu": "No GPU: CPU run. Machine memory = {max_memory_gb} GB (figures are process RSS).",
    "cpu_start": "{start_rss_gb} GB resident at start.",
    "runtime": "{train_runtime_s} seconds used for training.",
    "peak": "Peak reserved memory = {peak_reserved_gb} GB.",
    "peak_for_training": "Peak reserved memory for training = {peak_for_training_gb} GB.",
    "peak_percent": "Peak reserved memory % of max memory = {peak_percent} %.",
    "training_percent": "Peak reserved memory for training % of max memory = {training_percent} %.",
}
"""The report's lines in the seed's wording, by key; the UI renders the same figures from its string tables."""


def format_report(r: dict[str, Any], lines: Mapping[str, str] = REPORT_LINES) -> str:
    """Human-readable lines, from ``lines`` (REPORT_LINES' keys; a figure the report lacks reads None)."""
    keys = ["gpu", "gpu_start"] if r.get("device") == "cuda" else ["cpu", "cpu_start"]
    if "peak_reserved_gb" in r:
        keys += ["runtime", "peak", "peak_for_training", "peak_percent", "training_percent"]
    figures = defaultdict(lambda: None, r)
    return "\n".join(lines[key].format_map(figures) for key in keys)
