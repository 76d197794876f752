"""Gradio's per-session state stays bounded (kft.ui.sessions): lean sessions, a capacity, the idle ones dropped."""

from __future__ import annotations

import datetime
import tracemalloc
import uuid

import httpx

from conftest import free_port
from kft.config.app_settings import AppSettings, check_settings, parse_settings


def _tick(url: str, session: str) -> None:
    r = httpx.post(f"{url}gradio_api/call/training_status", json={"data": ["en"], "session_hash": session}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    with httpx.stream("GET", f"{url}gradio_api/call/training_status/{r.json()['event_id']}", timeout=60) as resp:
        assert any(line == "event: complete" for line in resp.iter_lines())


def test_sessions_are_lean_capped_and_dropped_when_idle(tmp_path):
    from gradio.state_holder import SessionState

    from kft.ui.server import launch, make_workspace
    from kft.ui.sessions import ANALYTICS_EVENTS, BoundedSessions, LeanSessionState

    settings = AppSettings(port=free_port(), data_dir=str(tmp_path / "d"), lang="en", max_sessions=50,
                           session_idle_s=30)
    server, url, _ = launch(settings, block=False, ws=make_workspace(settings))
    try:
        holder, blocks = server.state_holder, server.get_blocks()
        assert isinstance(holder, BoundedSessions) and holder.capacity == 50 and holder.idle_s == 30
        assert blocks.state_session_capacity == 50 and blocks.run_history is False
        assert blocks._queue.ANALYTICS_MAX_EVENTS == ANALYTICS_EVENTS  # for the dashboard kft closes
        sessions = [uuid.uuid4().hex for _ in range(4)]
        for s in sessions:
            _tick(url, s)
        assert set(sessions) <= set(holder.session_data)
        assert all(type(holder.session_data[s]) is LeanSessionState for s in sessions)
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        lean = [LeanSessionState(blocks) for _ in range(10)]
        mid = tracemalloc.take_snapshot()
        full = [SessionState(blocks) for _ in range(10)]
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        lean_kb = sum(d.size_diff for d in mid.compare_to(before, "filename")) / 10 / 1024
        full_kb = sum(d.size_diff for d in after.compare_to(mid, "filename")) / 10 / 1024
        assert lean_kb < 40 < 200 < full_kb, (lean_kb, full_kb)  # gradio's own: ~320 KB each for kft's page
        assert set(vars(lean[0])) == set(vars(full[0]))  # the same attributes gradio's code reads
        assert holder.drop_idle() == 0  # just used: kept
        later = datetime.datetime.now() + datetime.timedelta(seconds=31)
        assert holder.drop_idle(later) >= 4
        queue = blocks._queue
        assert not set(sessions) & (set(holder.session_data) | set(queue.pending_event_ids_session)
                                    | set(queue.pending_messages_per_session))
        _tick(url, sessions[0])  # a dropped session's page goes on: its next event makes a fresh session
        assert sessions[0] in holder.session_data
        for _ in range(60):  # past the capacity: the least recently used go first
            holder[uuid.uuid4().hex]
        assert len(holder.session_data) == 50 and sessions[0] not in holder.session_data
        assert set(holder.time_last_used) == set(holder.session_data)
    finally:
        server.get_blocks().close()


def test_session_settings_have_flags_and_bounds(monkeypatch):
    s = parse_settings(["--max-sessions", "120", "--session-idle-s", "300"])
    assert (s.max_sessions, s.session_idle_s) == (120, 300)
    monkeypatch.setenv("KFT_MAX_SESSIONS", "80")
    monkeypatch.setenv("KFT_SESSION_IDLE_S", "90")
    assert (parse_settings([]).max_sessions, parse_settings([]).session_idle_s) == (80, 90)
    assert (AppSettings().max_sessions, AppSettings().session_idle_s) == (200, 600)
    for bad in (AppSettings(max_sessions=0), AppSettings(session_idle_s=5)):
        try:
            check_settings(bad)
        except SystemExit as exc:
            assert "--max-sessions" in str(exc) or "--session-idle-s" in str(exc)
        else:
            raise AssertionError(bad)
