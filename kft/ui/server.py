"""Builds the Workspace from AppSettings and launches the Blocks app (used by app.py and the tests)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..services import Limits, Workspace
from ..settings import AppSettings, settings_warnings

logger = logging.getLogger(__name__)


def make_workspace(settings: AppSettings) -> Workspace:
    from gradio.utils import get_upload_folder

    return Workspace(settings.data_dir, Limits(max_steps=settings.max_steps, max_new_tokens=settings.max_new_tokens,
                                               read_only=settings.read_only,
                                               allowed_models=settings.allowed_model_names(),
                                               max_upload_bytes=settings.max_upload_mb * 1024**2,
                                               uploads_keep_bytes=settings.uploads_keep_mb * 1024**2),
                     upload_scratch=Path(get_upload_folder()))


def blocked_paths(settings: AppSettings) -> list[str]:
    """Folders gradio's file routes must never serve: the data directory and the model caches (HF, kft's tiny)."""
    from datasets import config as ds_config
    from huggingface_hub import constants

    from ..tiny import cache_root

    paths = [Path(settings.data_dir), Path(constants.HF_HOME), Path(constants.HF_HUB_CACHE),
             Path(ds_config.HF_DATASETS_CACHE), cache_root()]
    return list(dict.fromkeys(str(p.expanduser().resolve()) for p in paths))  # unique, in order


# long configuration names in the settings' labels (per_device_train_batch_size) wrap instead of being cut
CSS = "label span, .block-info { overflow-wrap: anywhere; }"


def launch(settings: AppSettings, block: bool = True, ws: Workspace | None = None) -> Any:
    """Build and start the app; ``ws`` lets a caller (the tests) keep a handle on the process-wide state."""
    from starlette.middleware import Middleware

    from ..model import choose_backend
    from .app import build_app
    from .guard import Guard

    for warning in settings_warnings(settings):
        logger.warning(warning)
    backend, reason = choose_backend("auto")
    logger.info("models will load on the %s backend: %s", backend, reason)
    ws = ws or make_workspace(settings)
    demo = build_app(ws, settings)
    demo.queue(default_concurrency_limit=8)
    # quiet: gradio's start-up lines suggest share=True, not how a public link works here (--share needs --auth)
    result = demo.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
                         auth=settings.auth_pairs(), prevent_thread_lock=True, show_error=True, quiet=True, css=CSS,
                         max_file_size=settings.max_upload_mb * 1024**2, blocked_paths=blocked_paths(settings),
                         allowed_paths=[],  # the guard: login throttle, no uploads when read-only
                         app_kwargs={"middleware": [Middleware(Guard, throttle=ws.logins,
                                                               read_only=ws.limits.read_only)]})
    logger.info("kft is running on %s", demo.local_url)
    if demo.share_url:
        logger.info("public link (password-protected): %s", demo.share_url)
    else:
        logger.info("for a public link, start with --share and --auth user:password (see README)")
    if block:
        demo.block_thread()
    return result
