"""Tokens/s and seconds per step over the last logged steps: one step's own rate jumps (189, 876, 375, 3,021 tokens/s
on the same run), so the training job reports these instead. Plain data; the job holds its lock around it."""

from __future__ import annotations

from collections import deque

PACE_WINDOW = 10  # logged steps the rates are measured over


class Pace:
    def __init__(self, window: int = PACE_WINDOW) -> None:
        self._points: deque[tuple[float, int, int]] = deque(maxlen=window + 1)  # (time, step, tokens seen)

    def log(self, now: float, step: int, tokens_seen: int) -> float | None:
        """Record a logged step; the tokens/s over the window (None until there are two steps)."""
        if self._points and step < self._points[-1][1]:
            self._points.clear()  # a resumed run logs from its checkpoint again: start afresh
        if not self._points or step > self._points[-1][1]:  # an eval or end-of-run log repeats the step
            self._points.append((now, step, tokens_seen))
        (t0, _, n0), (t1, _, n1) = self._points[0], self._points[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 and n1 > n0 else None

    def per_step(self) -> float | None:
        """Seconds per step over the window (None until there are two steps)."""
        (t0, s0, _), (t1, s1, _) = (self._points[0], self._points[-1]) if self._points else ((0, 0, 0),) * 2
        return (t1 - t0) / (s1 - s0) if s1 > s0 else None
