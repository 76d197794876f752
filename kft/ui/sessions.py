"""Gradio's per-session state, bounded: how many sessions are kept, for how long, and how much each one costs.

Gradio keeps a ``SessionState`` per session hash (every browser tab, and every API call that names no session) for up
to 10,000 sessions by default, and drops one only when that many are held. Each began with a copy of the config of
every block on the page (about 320 KB for kft's 189 blocks), kept only to answer Gradio's deep-link route, which kft
does not offer (kft.ui.routes closes it). Here a session starts without that copy (``LeanSessionState``), at most
``capacity`` sessions are held (``state_session_capacity``), and a session no event has used for ``idle_s`` seconds is
dropped, with the freed memory handed back to the system (an open page ticks every 2 s, so it is never idle).
Gradio's own once-a-second loop (``delete_all_expired_state``) drives the sweep: no thread of kft's.
"""

from __future__ import annotations

import datetime
import logging
import os
from copy import copy
from typing import Any

from gradio.state_holder import SessionState, StateHolder

from ..training.memory import trim_heap

logger = logging.getLogger(__name__)

SWEEP_EVERY_S = 5.0  # how often the idle sessions are looked for (gradio's loop calls every second)
# Gradio's queue keeps a record of each of the last 10,000 events (time, status, function, session) for its monitoring
# dashboard, which kft closes; on every failed event it also summed them all in a pandas frame. kft keeps the last few.
ANALYTICS_EVENTS = 100


class LeanSessionState(SessionState):
    """A ``SessionState`` without its copy of every block's config (deep links only; the rest is Gradio's own)."""

    def __init__(self, blocks: Any) -> None:  # noqa: D107 - SessionState.__init__ less config_values' contents
        self.blocks_config = copy(blocks.default_config)
        self.config_values: dict[int, Any] = {}
        self.state_data: dict[int, Any] = {}
        self._state_ttl: dict[int, Any] = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600

    def __setitem__(self, key: int, value: Any) -> None:
        super().__setitem__(key, value)
        self.config_values.pop(key, None)  # the deep-link copy gradio just made

    def _update_config(self, key: int) -> None:  # deep links only
        return None

    def _update_value_in_config(self, key: int, value: Any) -> None:  # deep links only
        return None


class BoundedSessions(StateHolder):
    """Gradio's ``StateHolder`` with lean sessions, and the sessions idle for ``idle_s`` seconds dropped."""

    def __init__(self, idle_s: float) -> None:
        super().__init__()
        self.idle_s = idle_s
        self._last_sweep = datetime.datetime.now()

    def __getitem__(self, session_id: str) -> SessionState:
        if session_id not in self.session_data:
            self.session_data[session_id] = LeanSessionState(self.blocks)
        return super().__getitem__(session_id)

    def delete_all_expired_state(self) -> None:
        super().delete_all_expired_state()
        now = datetime.datetime.now()
        if (now - self._last_sweep).total_seconds() >= SWEEP_EVERY_S:
            self._last_sweep = now
            self.drop_idle(now)

    def drop_idle(self, now: datetime.datetime | None = None) -> int:
        """Drop the sessions no event has used for ``idle_s`` seconds, and the queue's records of every session no
        longer held (dropped here or beyond the capacity) with no event pending; returns how many sessions."""
        now = now or datetime.datetime.now()
        limit = datetime.timedelta(seconds=self.idle_s)
        with self.lock:
            idle = [s for s in list(self.session_data) if now - self.time_last_used.get(s, now) > limit]
            for session_id in idle:
                self.session_data.pop(session_id, None)
                self.time_last_used.pop(session_id, None)
        forgotten = self._forget_queue_records()
        if idle or forgotten:
            trim_heap()
            logger.debug("dropped %d idle sessions (%d queue records); %d held", len(idle), forgotten,
                         len(self.session_data))
        return len(idle)

    def _forget_queue_records(self) -> int:
        """Gradio's queue keeps a message queue and a set of event ids per session hash and lets go of them only when
        a browser's event stream ends: an API call (a new session each) left them behind for good. Runs on the event
        loop (gradio's sweep is a task there), like every other change to them."""
        queue = getattr(getattr(self, "blocks", None), "_queue", None)
        if queue is None:
            return 0
        pending = queue.pending_event_ids_session
        gone = [s for s in list(pending) + list(queue.pending_messages_per_session)
                if s not in self.session_data and not pending.get(s)]
        for session_id in dict.fromkeys(gone):
            pending.pop(session_id, None)
            queue.pending_messages_per_session.pop(session_id, None)
        return len(gone)


def bound_sessions(app: Any, blocks: Any, idle_s: float) -> BoundedSessions:
    """Put a ``BoundedSessions`` in place of the launched app's state holder (its capacity: the Blocks'), and keep
    only the queue's last ``ANALYTICS_EVENTS`` event records."""
    holder = BoundedSessions(idle_s)
    holder.set_blocks(blocks)
    if getattr(blocks, "_queue", None) is not None:
        blocks._queue.ANALYTICS_MAX_EVENTS = ANALYTICS_EVENTS
    holder.session_data.update(app.state_holder.session_data)  # any made before this call
    holder.time_last_used.update(app.state_holder.time_last_used)
    app.state_holder = holder
    return holder
