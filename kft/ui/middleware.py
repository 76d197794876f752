"""An ASGI middleware in front of gradio's routes: throttles failed logins per client address (429), and in
read-only mode refuses gradio's upload route (403), so nothing is written to disk by an upload there.

The client address is the ASGI scope's: the socket peer, unless that peer is one of ``--trusted-proxies``, whose
X-Forwarded-For uvicorn then follows (kft.ui.server sets uvicorn's FORWARDED_ALLOW_IPS from the setting)."""

from __future__ import annotations

import json
import logging
from typing import Any

from ..services.limits import READ_ONLY
from ..services.login import LoginThrottle

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
    def __init__(self, app: Any, throttle: LoginThrottle, read_only: bool) -> None:
        self.app, self.throttle, self.read_only = app, throttle, read_only

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if self.read_only and _is(path, "/gradio_api/upload"):
            return await _refuse(send, 403, READ_ONLY)
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
