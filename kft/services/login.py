"""LoginThrottle: failed logins counted per client address in a sliding window; past the limit, the address
waits until its oldest failure in the window is old enough (a password cannot be guessed at network speed).
A guess is counted as a failure before it is judged (``attempt``), and only a success takes its own count back, so
simultaneous guesses cannot all pass the check before the first is counted. A success does not clear the count:
one valid account must not reset the guessing at another's password."""

from __future__ import annotations

import threading
import time
from collections import deque

MAX_FAILURES = 10
WINDOW_S = 300.0


class LoginThrottle:
    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 clock=time.monotonic) -> None:  # noqa: ANN001 - a callable returning seconds
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def retry_after(self, client: str) -> int:
        """Seconds ``client`` must wait before its next login attempt (0: it may try now)."""
        with self._lock:
            now = self.clock()
            times = self._recent(client, now)
            if len(times) < self.max_failures:
                return 0
            return max(1, int(times[-self.max_failures] + self.window_s - now + 0.999))

    def attempt(self, client: str) -> tuple[int, float | None]:
        """Count a login attempt as failed before it is judged: (0, its ticket), or (seconds to wait, None) if the
        address is over the limit and the attempt must be refused unjudged. Atomic: at most ``max_failures``
        attempts of one address are judged in a window, however many arrive at once."""
        with self._lock:
            now = self.clock()
            times = self._recent(client, now)
            if len(times) >= self.max_failures:
                return max(1, int(times[-self.max_failures] + self.window_s - now + 0.999)), None
            self._add(client, times, now)
            return 0, now

    def succeeded(self, client: str, ticket: float) -> None:
        """The attempt counted with ``ticket`` logged in: take that count (and only it) back."""
        with self._lock:
            times = self._failures.get(client)
            if times is not None and ticket in times:
                times.remove(ticket)

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            self._add(client, self._recent(client, now), now)

    def _add(self, client: str, times: deque[float], now: float) -> None:
        times.append(now)
        self._failures[client] = times
        if len(self._failures) > 10_000:  # many addresses: forget those with no recent failure
            for key in [k for k, v in self._failures.items() if not self._recent(k, now)]:
                del self._failures[key]

    def message(self, wait: int) -> str:
        return (f"Too many failed logins from this address ({self.max_failures} in {self.window_s / 60:g} minutes): "
                f"try again in {wait} s.")
