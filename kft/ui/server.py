"""Builds the Workspace from AppSettings and launches the Blocks app (used by app.py and the tests)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..config.app_settings import AppSettings, settings_warnings
from ..services import Limits, Workspace
from ..services.uploads import ALIAS_PREFIX, SCRATCH_NAME, empty_scratch, scratch_alias, scratch_folder

logger = logging.getLogger(__name__)


def own_upload_folder(settings: AppSettings) -> Path:
    """Point Gradio's upload folder (GRADIO_TEMP_DIR) at kft's own (``scratch_folder``), emptied now: a process killed
    before it could tidy left its uploads there. Gradio is given it by an alias in the temp folder (a link), so the
    paths in its file URLs never name the data directory. A second app in this process keeps the folder chosen first."""
    current = os.environ.get("GRADIO_TEMP_DIR")
    if current and Path(current).name.startswith(ALIAS_PREFIX):  # another app in this process (the tests) chose it
        chosen = Path(current).resolve()
        chosen.mkdir(parents=True, exist_ok=True)  # its data directory may be gone: the link must not dangle
        return chosen
    folder = scratch_folder(Path(settings.data_dir))
    empty_scratch(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(scratch_alias(folder))
    return folder


def make_workspace(settings: AppSettings) -> Workspace:
    scratch = own_upload_folder(settings)
    return Workspace(settings.data_dir, Limits(max_steps=settings.max_steps, max_new_tokens=settings.max_new_tokens,
                                               read_only=settings.read_only,
                                               allowed_models=settings.allowed_model_names(),
                                               max_upload_bytes=settings.max_upload_mb * 1024**2,
                                               uploads_keep_bytes=settings.uploads_keep_mb * 1024**2,
                                               uploads_quota_bytes=settings.uploads_quota_mb * 1024**2),
                     upload_scratch=scratch)


def blocked_paths(settings: AppSettings) -> list[str]:
    """Folders gradio's file routes must never serve: the data directory (every entry but kft's own gradio upload
    folder, which gradio serves and preprocesses uploads from; runs and uploads always, made or not) and the model
    caches (HF, kft's tiny)."""
    from datasets import config as ds_config
    from huggingface_hub import constants

    from ..models.tiny import cache_root

    data = Path(settings.data_dir).expanduser().resolve()
    entries = {data / "runs", data / "uploads", *(data.iterdir() if data.is_dir() else ())}
    paths = [*sorted(p for p in entries if p.name != SCRATCH_NAME), Path(constants.HF_HOME),
             Path(constants.HF_HUB_CACHE), Path(ds_config.HF_DATASETS_CACHE), cache_root()]
    return list(dict.fromkeys(str(p.expanduser().resolve()) for p in paths))  # unique, in order


def trust_proxies(settings: AppSettings) -> None:
    """Tell uvicorn (which gradio starts with proxy headers on) whose X-Forwarded-For to believe: only
    --trusted-proxies. Its own default believes 127.0.0.1, so behind loopback any client could name itself and
    dodge the login throttle. uvicorn reads FORWARDED_ALLOW_IPS when gradio builds its config; empty: nobody."""
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(settings.trusted_proxy_list())
    if settings.trusted_proxy_list():
        logger.info("X-Forwarded-For is believed from %s only", ", ".join(settings.trusted_proxy_list()))


# long configuration names in the settings' labels (per_device_train_batch_size) wrap instead of being cut;
# the data preview's long example rows wrap instead of running off the right edge;
# at phone width the scorecard table keeps readable columns and scrolls sideways in its frame; the runs table shows
# its key columns
# one font for Hangul and Latin letters (else the fallback mixes two, and the "A" of "LoRA" differs from "Lo"); Korean
# words never break in the middle (the Korean "refresh" button); at phone width the title stays on one or two lines
CSS = """:root, .gradio-container { --font: "Noto Sans CJK KR", "Noto Sans KR", "Apple SD Gothic Neo", "Malgun Gothic",
  ui-sans-serif, system-ui, sans-serif !important; }
body, button, label, .prose, .block-info, input, textarea { word-break: keep-all; }
label span, .block-info { overflow-wrap: anywhere; }
#kft-preview pre, #kft-preview code { white-space: pre-wrap; overflow-wrap: anywhere; }
.form > .block.kft-check { min-width: min(160px, 100%) !important; }  /* gradio gives checkboxes no minimum width */
/* a dropdown's text stops before its arrow (the arrow covered a run's name) */
.wrap-inner .secondary-wrap input[role=combobox] { padding-right: 24px; text-overflow: ellipsis; }
@media (max-width: 700px) {
  #kft-sc-table table { min-width: max-content !important; }
  #kft-sc-table th, #kft-sc-table td, #kft-sc-table .body-cell {
    width: 140px !important; min-width: 140px !important; max-width: 140px !important; flex: 0 0 140px !important; }
  /* the runs list at phone width: a reduced table of the key columns (run, status, steps, final loss, adapter) that
     fits the screen; model, data, settings, checkpoint and start time are the wide screen's */
  #kft-runs-table [aria-colindex="3"], #kft-runs-table [aria-colindex="4"], #kft-runs-table [aria-colindex="6"],
  #kft-runs-table [aria-colindex="8"], #kft-runs-table [aria-colindex="10"] { display: none !important; }
  #kft-runs-table table, #kft-runs-table .virtual-row { width: 100% !important; }
  /* the page's width less its margins, shared out: the header's cells and the body's get the same widths (a header
     cell's percentage resolved against a table Gradio sizes itself, 40 px for the run's 107) */
  #kft-runs-table { --kft-w: calc(100vw - 66px); }
  #kft-runs-table [aria-colindex="1"] { width: calc(var(--kft-w) * 0.32) !important;
    min-width: calc(var(--kft-w) * 0.32) !important; max-width: calc(var(--kft-w) * 0.32) !important; flex: 0 0 calc(var(--kft-w) * 0.32) !important; }
  #kft-runs-table [aria-colindex="2"] { width: calc(var(--kft-w) * 0.26) !important;
    min-width: calc(var(--kft-w) * 0.26) !important; max-width: calc(var(--kft-w) * 0.26) !important; flex: 0 0 calc(var(--kft-w) * 0.26) !important; }
  #kft-runs-table [aria-colindex="5"], #kft-runs-table [aria-colindex="7"] { width: calc(var(--kft-w) * 0.16) !important;
    min-width: calc(var(--kft-w) * 0.16) !important; max-width: calc(var(--kft-w) * 0.16) !important; flex: 0 0 calc(var(--kft-w) * 0.16) !important; }
  #kft-runs-table [aria-colindex="9"] { width: calc(var(--kft-w) * 0.1) !important;
    min-width: calc(var(--kft-w) * 0.1) !important; max-width: calc(var(--kft-w) * 0.1) !important; flex: 0 0 calc(var(--kft-w) * 0.1) !important; }
  #kft-runs-table .cell-menu-button { display: none; }
  #kft-gen-settings .form > .block { min-width: 100% !important; }  /* one control a line: no squeezed labels */
  #kft-title h2 { font-size: 1.25rem; }
  #kft-title { min-width: 100% !important; flex-basis: 100% !important; }  /* the language choice goes below it */
}"""


def launch(settings: AppSettings, block: bool = True, ws: Workspace | None = None) -> Any:
    """Build and start the app; ``ws`` lets a caller (the tests) keep a handle on the process-wide state."""
    from starlette.middleware import Middleware

    from ..models.loading import choose_backend
    from .app import build_app
    from .middleware import Guard
    from .sessions import bound_sessions

    for warning in settings_warnings(settings):
        logger.warning(warning)
    backend, reason = choose_backend("auto")
    logger.info("models will load on the %s backend: %s", backend, reason)
    ws = ws or make_workspace(settings)
    trust_proxies(settings)
    demo = build_app(ws, settings)
    demo.queue(default_concurrency_limit=8)
    # quiet: gradio's start-up lines suggest share=True, not how a public link works here (--share needs --auth)
    result = demo.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
                         auth=settings.auth_pairs(), prevent_thread_lock=True, show_error=True, quiet=True, css=CSS,
                         max_file_size=settings.max_upload_mb * 1024**2, blocked_paths=blocked_paths(settings),
                         allowed_paths=[], state_session_capacity=settings.max_sessions,
                         run_history=False, enable_monitoring=False,  # neither is kft's (kft.ui.routes closes them)
                         # the guard: login throttle, no uploads when read-only
                         app_kwargs={"middleware": [Middleware(Guard, throttle=ws.logins,
                                                               read_only=ws.limits.read_only,
                                                               quota_problem=ws.uploads.quota_problem,
                                                               lang=settings.lang)]})
    bound_sessions(result[0], demo, settings.session_idle_s)  # lean sessions, the idle ones dropped
    logger.info("kft is running on %s", demo.local_url)
    if demo.share_url:
        logger.info("public link (password-protected): %s", demo.share_url)
    else:
        logger.info("for a public link, start with --share and --auth user:password (see README)")
    if block:
        serve_until_stopped(demo, ws)
    return result


def serve_until_stopped(demo: Any, ws: Workspace) -> None:
    """Serve until Ctrl+C or SIGTERM (a container's or a Space's stop): both close the server, which deletes
    Gradio's files (its delete_cache), and then kft empties its upload folder. SIGTERM killed the process at once,
    and every upload stayed on disk."""
    import signal
    import threading

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    try:
        while demo.is_running and not stopped.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        logger.info("kft is stopping: closing the server and emptying the upload folder")
        demo.close(verbose=False)
        if ws.uploads.scratch is not None:
            empty_scratch(ws.uploads.scratch)
