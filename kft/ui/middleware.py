"""An ASGI middleware in front of gradio's routes: closes the routes kft does not use (404) and asks for the login on
those gradio serves without one (401), as kft.ui.routes lists them; throttles failed logins per client address (429);
in read-only mode refuses gradio's upload route (403), so nothing is written to disk by an upload there; and refuses
an upload that would take the uploads past their quota (413; one without a Content-Length: 411) before gradio writes it.

The client address is the ASGI scope's: the socket peer, unless that peer is one of ``--trusted-proxies``, whose
X-Forwarded-For uvicorn then follows (kft.ui.server sets uvicorn's FORWARDED_ALLOW_IPS from the setting)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ..services.limits import READ_ONLY
from ..services.login import LoginThrottle
from .guard import os_words
from .routes import CLOSED, LOGIN, logged_in, policy
from .strings import DEFAULT_LANG

logger = logging.getLogger(__name__)


def _is(path: str, route: str) -> bool:
    return path.rstrip("/").endswith(route)


async def _refuse(send: Any, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: Any, throttle: LoginThrottle, read_only: bool,
                 quota_problem: Callable[[int], str | None] | None = None, lang: str = DEFAULT_LANG) -> None:
        """``quota_problem(bytes)``: why that many more bytes of uploads do not fit (UploadStore.quota_problem);
        ``lang``: the server's (--lang), for the words of a refused upload."""
        self.app, self.throttle, self.read_only, self.quota_problem = app, throttle, read_only, quota_problem
        self.lang = lang

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        rule = policy(scope.get("method", ""), path)
        if rule == CLOSED:
            return await _refuse(send, 404, "Not Found")
        if rule == LOGIN and not logged_in(scope.get("app"), scope.get("headers") or []):
            return await _refuse(send, 401, "Not authenticated")
        if scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        if _is(path, "/gradio_api/upload"):
            if self.read_only:
                return await _refuse(send, 403, READ_ONLY)
            if self.quota_problem is not None:
                refused = self._over_quota(scope)
                if refused:
                    logger.warning("upload refused: %s", refused[1])
                    return await _refuse(send, *refused)
            return await self._upload(scope, receive, send)
        if not _is(path, "/login"):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown", 0))[0]
        wait, ticket = self.throttle.attempt(client)  # counted as failed before it is judged
        if wait:
            logger.warning("login from %s refused for %d s: too many failed logins", client, wait)
            return await _refuse(send, 429, self.throttle.message(wait), [(b"retry-after", str(wait).encode())])
        answered: list[int] = []

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answered.append(message["status"])  # gradio answers a wrong password with 400
            await send(message)

        try:
            return await self.app(scope, receive, watch)
        finally:
            if answered and answered[0] < 400:
                self.throttle.succeeded(client, ticket)

    async def _upload(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Gradio's upload route, with a disk that cannot take the file (full, read-only) answered in kft's words
        (507) instead of a server error."""
        started: list[bool] = []

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.append(True)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except OSError as exc:
            logger.warning("an upload could not be written: %s", exc)
            if started:
                raise
            await _refuse(send, 507, os_words(exc, self.lang))

    def _over_quota(self, scope: dict[str, Any]) -> tuple[int, str] | None:
        """(status, why) for an upload that does not fit the quota, judged by its Content-Length before any byte
        is written; None when it fits."""
        length = dict(scope.get("headers") or []).get(b"content-length", b"").decode("latin-1").strip()
        if not length.isdigit():
            return 411, "an upload must say its size (Content-Length), so the server can check it fits its quota"
        problem = self.quota_problem(int(length)) if self.quota_problem else None
        return (413, problem) if problem else None
