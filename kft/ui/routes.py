"""Which of the routes Gradio 6 mounts kft serves, and to whom.

Gradio mounts about 90 routes (``app.routes`` of a launched Blocks); kft's page and API need about half. Each route is
one of: ``OPEN`` (the login page needs it, or Gradio answers it behind ``--auth`` itself), ``LOGIN`` (needed, but Gradio
serves it without checking the login: kft asks for one when ``--auth`` is set) or closed (404, for everyone: the run
history and its Hub buckets, deep links, the component server, custom components, the reverse proxy, media streams,
screen recording, the monitoring dashboard, the profiler, the vibe editor, dev reload, FastAPI's own schema). A route
this table does not name is closed, so a route a later Gradio adds stays shut until it is read and listed here.
``tests/test_routes.py`` checks that every route a launched app mounts is named here.
"""

from __future__ import annotations

import re

OPEN, LOGIN, CLOSED = "open", "login", "closed"

_NAME = r"[^/]+"
# (methods, path pattern, policy); the first match decides
TABLE: list[tuple[frozenset[str], str, str]] = [
    # the page and the login: Gradio's own (the config and every API route check the login themselves)
    (frozenset({"GET", "HEAD"}), r"/", OPEN),
    (frozenset({"POST"}), r"/login/?", OPEN),
    (frozenset({"GET"}), r"/logout", OPEN),
    (frozenset({"GET"}), r"/config/?", OPEN),
    (frozenset({"GET"}), r"/(?:static|assets|svelte)/.*", OPEN),
    (frozenset({"GET"}), r"/(?:favicon\.ico|theme\.css|robots\.txt|manifest\.json)", OPEN),
    (frozenset({"GET"}), r"/pwa_icon(?:/[^/]+)?", OPEN),  # a Space serves the page as a PWA
    (frozenset({"GET"}), r"/gradio_api/theme\.css", OPEN),
    (frozenset({"GET"}), r"/gradio_api/(?:user|login_check|token|app_id)/?", OPEN),
    # the API and the page's events (Gradio checks the login on each)
    (frozenset({"GET"}), r"/gradio_api/(?:info/?|openapi\.json)", OPEN),
    (frozenset({"POST"}), r"/gradio_api/queue/join", OPEN),
    (frozenset({"GET"}), r"/gradio_api/queue/(?:data|status)", OPEN),
    (frozenset({"POST"}), rf"/gradio_api/(?:call|call/v2|run|api)/{_NAME}/?", OPEN),
    (frozenset({"GET"}), rf"/gradio_api/call(?:/v2)?/{_NAME}/{_NAME}", OPEN),
    (frozenset({"POST"}), r"/gradio_api/upload", OPEN),  # refused in read-only mode (kft.ui.middleware)
    (frozenset({"GET"}), r"/gradio_api/upload_progress", OPEN),
    (frozenset({"GET", "HEAD"}), r"/gradio_api/file=.*", OPEN),  # downloads; blocked_paths keep the data out
    (frozenset({"GET"}), r"/gradio_api/startup-events", OPEN),  # launch() calls it, without a login; runs once
    # needed by the page, served by Gradio without a login check
    (frozenset({"GET"}), rf"/gradio_api/heartbeat/{_NAME}", LOGIN),
    (frozenset({"POST"}), r"/gradio_api/(?:cancel|reset/?)", LOGIN),
]
_COMPILED = [(methods, re.compile(pattern + r"\Z", re.DOTALL), policy) for methods, pattern, policy in TABLE]


def policy(method: str, path: str) -> str:
    """OPEN, LOGIN or CLOSED for one request (``path`` without the app's root path)."""
    method = method.upper()
    for methods, pattern, rule in _COMPILED:
        if method in methods and pattern.match(path):
            return rule
    if method == "OPTIONS":  # CORS preflight: Gradio's CORS middleware answers it
        return OPEN
    return CLOSED


def logged_in(app: object, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request carries the login of Gradio ``app`` (its access-token cookie); True without ``--auth``."""
    if getattr(app, "auth", None) is None:  # kft's login is gradio's auth=, never an auth_dependency
        return True
    cookie_id = getattr(app, "cookie_id", "")
    names = {f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"}
    tokens = getattr(app, "tokens", {}) or {}
    for name, value in headers:
        if name.lower() != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, token = part.strip().partition("=")
            if key in names and tokens.get(token) is not None:
                return True
    return False
