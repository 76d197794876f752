"""The routes Gradio mounts: each one kft does not use answers 404 (to everyone), each one the page needs that Gradio
serves without a login asks for one behind --auth (kft.ui.routes), and the page and the API still work logged in."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import _IncludedRouter

from conftest import free_port
from kft.config.app_settings import AppSettings
from kft.ui.routes import CLOSED, LOGIN, OPEN, policy

AUTH = ("kft", "pw-Routes-123")

# every route a launched kft app mounts that kft closes: a Gradio upgrade that adds or renames one fails
# test_every_mounted_route_is_decided until it is read and put in kft.ui.routes.TABLE or here
CLOSED_ROUTES = {
    ("GET", "/openapi.json"), ("HEAD", "/openapi.json"), ("GET", "/gradio_api/deep_link"),
    ("GET", "/gradio_api/dev/reload"), ("GET", "/gradio_api/runs"), ("GET", "/gradio_api/runs/"),
    ("GET", "/gradio_api/custom_component/{id}/{environment}/{type}/{file_name}"),
    ("GET", "/gradio_api/proxy={url_path:path}"), ("HEAD", "/gradio_api/proxy={url_path:path}"),
    ("POST", "/gradio_api/stream/{event_id}"), ("POST", "/gradio_api/stream/{event_id}/close"),
    ("GET", "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist.m3u8"),
    ("GET", "/gradio_api/stream/{session_hash}/{run}/{component_id}/{segment_id}.{ext}"),
    ("GET", "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist-file"),
    ("GET", "/gradio_api/file/{path:path}"), ("POST", "/gradio_api/component_server"),
    ("POST", "/gradio_api/component_server/"), ("POST", "/gradio_api/process_recording"),
    ("GET", "/monitoring"), ("GET", "/monitoring/summary"), ("GET", "/monitoring/{key}"),
    ("POST", "/gradio_api/vibe-edit"), ("POST", "/gradio_api/vibe-edit/"), ("POST", "/gradio_api/undo-vibe-edit"),
    ("POST", "/gradio_api/undo-vibe-edit/"), ("GET", "/gradio_api/vibe-code"), ("GET", "/gradio_api/vibe-code/"),
    ("POST", "/gradio_api/vibe-code"), ("POST", "/gradio_api/vibe-code/"), ("POST", "/gradio_api/vibe-starter-queries"),
    ("POST", "/gradio_api/vibe-starter-queries/"),
}
# closed routes that kft's launch does not even mount (run_history=False, no profiler, no MCP), asked all the same
NOT_MOUNTED = [("POST", "/gradio_api/run-history/connect", {"bucket_id": "abc/def"}),
               ("GET", "/gradio_api/run-history/buckets", None), ("GET", "/gradio_api/run-history/records", None),
               ("GET", "/gradio_api/run-history/records/a/b/assets/c", None), ("GET", "/gradio_api/profiling/traces", None),
               ("POST", "/gradio_api/profiling/clear", None), ("GET", "/gradio_api/mcp/sse", None),
               ("GET", "/docs", None), ("GET", "/gradio_api/some-route-a-later-gradio-adds", None)]


def _sample(template: str) -> str:
    """A concrete path for a route template ({name} and {name:path} filled in)."""
    return re.sub(r"\{[^}]+\}", "abc", template)


def _mounted(routes, out=None) -> set[tuple[str, str]]:
    out = set() if out is None else out
    for route in routes:
        if isinstance(route, _IncludedRouter):
            _mounted(route.effective_candidates(), out)
            continue
        for method in getattr(route, "methods", None) or ():
            out.add((method, route.path))
    return out


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    settings = AppSettings(port=free_port(), data_dir=str(tmp_path_factory.mktemp("routes")), lang="en",
                           auth=f"{AUTH[0]}:{AUTH[1]}")
    from kft.ui.server import launch, make_workspace

    ws = make_workspace(settings)
    server, url, _ = launch(settings, block=False, ws=ws)
    try:
        yield url, server
    finally:
        server.get_blocks().close()


def test_every_mounted_route_is_decided(app):
    _, server = app
    mounted = _mounted(server.routes)
    assert len(mounted) > 60, mounted  # the walk saw gradio's router, not only the app's own routes
    closed = {(m, p) for m, p in mounted if policy(m, _sample(p)) == CLOSED}
    assert closed == CLOSED_ROUTES, ("closed now", closed - CLOSED_ROUTES, "no longer closed", CLOSED_ROUTES - closed)
    assert not any("run-history" in p for _, p in mounted)  # run_history=False: Gradio mounts none of it
    kept = {p for m, p in mounted if policy(m, _sample(p)) != CLOSED}
    for needed in ("/", "/config", "/login", "/gradio_api/queue/join", "/gradio_api/queue/data", "/gradio_api/upload",
                   "/gradio_api/file={path_or_url:path}", "/gradio_api/heartbeat/{session_hash}",
                   "/gradio_api/call/{api_name}", "/gradio_api/info", "/gradio_api/cancel"):
        assert needed in kept, needed


@pytest.mark.parametrize(("method", "template"), sorted(CLOSED_ROUTES))
def test_an_unneeded_route_answers_404_without_a_login(app, method, template):
    url, _ = app
    path = _sample(template).lstrip("/")
    r = httpx.request(method, f"{url}{path}", json={"bucket_id": "abc/def"} if method == "POST" else None, timeout=30)
    assert r.status_code == 404, (method, template, r.status_code, r.text[:300])


@pytest.mark.parametrize(("method", "path", "body"), NOT_MOUNTED)
def test_routes_kft_does_not_mount_answer_404(app, method, path, body):
    url, _ = app
    r = httpx.request(method, f"{url}{path.lstrip('/')}", json=body, timeout=30)
    assert r.status_code == 404, (path, r.status_code, r.text[:300])


def test_routes_gradio_serves_without_a_login_ask_for_one(app):
    url, _ = app
    for method, path, body in [("GET", "gradio_api/heartbeat/abc", None),
                               ("POST", "gradio_api/cancel", {"session_hash": "a", "fn_index": 0, "event_id": "e"}),
                               ("POST", "gradio_api/reset", {"event_id": "e"})]:
        r = httpx.request(method, f"{url}{path}", json=body, timeout=30)
        assert r.status_code == 401, (path, r.status_code, r.text[:300])
    for path in ("config", "gradio_api/info", "gradio_api/queue/status"):  # gradio's own login check answers these
        assert httpx.get(f"{url}{path}", timeout=30).status_code == 401, path
    assert httpx.get(url, timeout=30).status_code == 200  # the login page itself
    assert policy("GET", "/gradio_api/heartbeat/x") == LOGIN and policy("OPTIONS", "/x") == OPEN


def test_the_page_and_the_api_work_logged_in(app):
    url, _ = app
    with httpx.Client(timeout=60) as http:
        assert http.post(f"{url}login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
        assert http.get(url).status_code == 200 and http.get(f"{url}config").status_code == 200
        assert http.post(f"{url}gradio_api/reset", json={"event_id": "e"}).status_code == 200
        with http.stream("GET", f"{url}gradio_api/heartbeat/abc") as beat:
            assert beat.status_code == 200
        r = http.post(f"{url}gradio_api/call/training_status", json={"data": ["en"]})
        assert r.status_code == 200, r.text[:300]
        with http.stream("GET", f"{url}gradio_api/call/training_status/{r.json()['event_id']}") as resp:
            events = [line for line in resp.iter_lines() if line.startswith("event:")]
        assert events[-1] == "event: complete", events
        assert http.get(f"{url}gradio_api/deep_link", params={"session_hash": "abc"}).status_code == 404
