"""The decode step as a CUDA graph, guarded so that a capture costs speed at worst, never an answer or the process.

Protocol (``StepGraph.run``, every step of an engine): the first step runs eagerly; the second is run eagerly on a
side stream (the warm-up, which writes the same cache slot the replay writes), then captured, then replayed once and
compared with the eager result. A capture that raises, or whose replay differs from the eager step by more than
``TOLERANCE`` of the largest logit, is dropped: this engine then runs every step eagerly, and the eager result of that
step is the one returned. Later steps replay.

Why the guards: on the H200, a capture made in a process that had imported Unsloth failed ("operation failed due to a
previous error during capture"), and the failed capture left the CUDA random generator marked as capturing, so the
next ``normal_`` anywhere in the process raised. The capture here uses ``thread_local`` mode (another thread's
CUDA calls do not invalidate it), never draws random numbers (sampling is outside the step), always ends the capture
and restores the stream, and after a failure repairs the default generator's state (``repair_rng``).

``CudaCapture`` holds the CUDA-specific calls; the tests stand in for it on the CPU to run the same protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)
TOLERANCE = 1e-2  # of the largest logit: the same kernels give 0 or rounding; a wrong capture gives logit-sized errors
WARMUP_RUNS = 2


class CudaCapture:
    """Warm-up runs on a side stream and a capture, with the failure handling CUDA needs."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = device
        self.stream = torch.cuda.Stream(device=device)

    def warm_up(self, fn: Callable[[], None]) -> None:
        import torch

        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            for _ in range(WARMUP_RUNS):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def capture(self, fn: Callable[[], None]) -> Callable[[], None]:
        """The replay of ``fn`` captured; raises (with the capture ended and the stream restored) when it fails."""
        import torch

        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        failure: BaseException | None = None
        with torch.cuda.stream(self.stream):
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - the capture must be ended whatever happened
                failure = exc
            finally:
                try:
                    graph.capture_end()
                except Exception as exc:  # noqa: BLE001
                    failure = failure or exc
        if failure is not None:
            torch.cuda.synchronize(self.device)
            repair_rng(self.device)
            raise failure
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return graph.replay


def repair_rng(device: Any) -> bool:
    """Make the default CUDA generator usable after a failed capture (which can leave it marked as capturing):
    probe it, and if it raises give it a fresh copy of its state (same seed and offset). True when it works."""
    import torch

    def probe() -> bool:
        try:
            torch.empty(1, device=device).normal_()
            return True
        except RuntimeError:
            return False

    if probe():
        return True
    index = device.index if device.index is not None else torch.cuda.current_device()
    gen = torch.cuda.default_generators[index]
    try:
        gen.graphsafe_set_state(gen.clone_state())
    except (RuntimeError, AttributeError) as exc:
        logger.error("the CUDA random generator could not be repaired after a failed capture: %s", exc)
        return False
    ok = probe()
    logger.warning("the CUDA random generator was repaired after a failed capture: %s", "works" if ok else "still broken")
    return ok


class StepGraph:
    """Runs ``fn`` (a step that reads and writes only its engine's buffers) eagerly or as a captured graph."""

    def __init__(self, fn: Callable[[], None], device: Any, enabled: bool | None = None, capturer: Any | None = None,
                 output: Callable[[], Any] | None = None) -> None:
        self.fn = fn
        self.enabled = (device.type == "cuda") if enabled is None else enabled
        self.capturer = capturer
        self.device = device
        self.output = output  # the step's output buffer (for the first replay's check)
        self.replay: Callable[[], None] | None = None
        self.steps = 0
        self.state = "eager" if not self.enabled else "pending"  # pending -> captured | failed
        self.failure: str | None = None

    def run(self) -> None:
        self.steps += 1
        if self.replay is not None:
            self.replay()
            return
        if self.state != "pending" or self.steps < 2:
            self.fn()
            return
        self._capture()

    def _capture(self) -> None:
        capturer = self.capturer or CudaCapture(self.device)
        self.capturer = capturer
        try:
            capturer.warm_up(self.fn)
            expected = self.output().clone() if self.output else None
            replay = capturer.capture(self.fn)
            replay()
        except Exception as exc:  # noqa: BLE001 - a faster path must not cost the answer
            self._give_up(f"{type(exc).__name__}: {str(exc)[:200]}")
            self.fn()
            return
        if expected is not None:
            got = self.output()
            err = float((got - expected).abs().max())
            scale = max(float(expected.abs().max()), 1e-6)
            if not err <= TOLERANCE * scale:  # also catches NaN
                self._give_up(f"the replayed step differs from the eager one by {err:.3g} (logits up to {scale:.3g})")
                got.copy_(expected)
                return
        self.replay, self.state = replay, "captured"
        logger.info("decode step captured as a CUDA graph")

    def _give_up(self, why: str) -> None:
        self.state, self.failure = "failed", why
        logger.warning("the decode step runs eagerly (no CUDA graph): %s", why)
