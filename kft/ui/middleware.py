"""An ASGI middleware in front of gradio's routes: throttles failed logins per client address (429), and in
read-only mode refuses gradio's upload route (403), so nothing is written to disk by an upload there."""

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
        wait = self.throttle.retry_after(client)
        if wait:
            logger.warning("login from %s refused for %d s: too many failed logins", client, wait)
            return await _refuse(send, 429, self.throttle.message(wait), [(b"retry-after", str(wait).encode())])

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] in (400, 401):
                self.throttle.failed(client)  # gradio answers a wrong password with 400
            await send(message)

        return await self.app(scope, receive, watch)
