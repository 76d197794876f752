"""Builds the Workspace from AppSettings and launches the Blocks app (used by app.py and the tests)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..settings import AppSettings
from ..workspace import Limits, Workspace

logger = logging.getLogger(__name__)


def make_workspace(settings: AppSettings) -> Workspace:
    return Workspace(settings.data_dir, Limits(max_steps=settings.max_steps, max_new_tokens=settings.max_new_tokens,
                                               read_only=settings.read_only))


def launch(settings: AppSettings, block: bool = True, ws: Workspace | None = None) -> Any:
    """Build and start the app; ``ws`` lets a caller (the tests) keep a handle on the process-wide state."""
    from .app import build_app

    ws = ws or make_workspace(settings)
    demo = build_app(ws, settings)
    demo.queue(default_concurrency_limit=8)
    return demo.launch(
        server_name=settings.host, server_port=settings.port, share=settings.share,
        auth=settings.auth_pairs(), prevent_thread_lock=not block, show_error=True,
        max_file_size="200mb", blocked_paths=[str(Path(settings.data_dir).resolve())],
    )
