"""Getting a trained adapter out of a run directory: a zip beside it, or a push to the Hugging Face Hub.
The Hub token comes only from the environment (HF_TOKEN) and is never logged, returned or put in an error."""

from __future__ import annotations

import json
import logging
import os
import threading
import zipfile
from pathlib import Path

from ..config.args import TINY_MODEL
from ..config.validation import looks_like_hub_id
from .store import RunDir

logger = logging.getLogger(__name__)

TOKEN_ENV = "HF_TOKEN"
STORED_SUFFIXES = (".safetensors", ".bin")  # weights barely compress: store them, zip the rest
TEXT_SUFFIXES = (".json", ".md", ".txt", ".jinja")  # the adapter's files that may name the base model's folder
_zip_lock = threading.Lock()


class ExportError(ValueError):
    """The adapter could not be exported; the message says why (never holds the token)."""


def adapter_dir(run_dir: str | Path) -> Path:
    run = RunDir(run_dir)
    if not run.has_adapter:
        raise ExportError(f"No adapter in {run_dir}: the run did not save one (it failed before the end or is still running)")
    return run.adapter


def public_model_name(name: str) -> str:
    """A base model as files handed out may name it: the Hub id or ``tiny`` the user chose; a local model directory
    by its folder's name only (no server path)."""
    if name == TINY_MODEL or not (name.startswith(("/", ".", "~")) or (Path(name).expanduser() / "config.json").is_file()):
        return name
    return Path(name).expanduser().name or name


def unpath_adapter(folder: Path, model_path: str | None, name: str | None) -> None:
    """Replace the base model's server path (the tiny model's cache, a local directory) by its public name in the
    adapter's text files: PEFT writes the path it loaded from into adapter_config.json and the README's base_model."""
    if not model_path or not name or not Path(model_path).is_absolute():
        return
    public = public_model_name(name)
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES):
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, ValueError):
            continue
        new = text.replace(json.dumps(model_path)[1:-1], public).replace(model_path, public)
        if new != text:
            f.write_text(new, encoding="utf-8")


def zip_adapter(run_dir: str | Path) -> Path:
    """RUN_DIR/<run name>-adapter.zip holding adapter/ (written once, then reused), naming no server path."""
    src = adapter_dir(run_dir)
    target = RunDir(run_dir).zip_file
    with _zip_lock:
        if target.is_file():
            return target
        raw = RunDir(run_dir).read_json() or {}
        model = raw.get("config", {}).get("model") if isinstance(raw.get("config"), dict) else None
        name = model.get("name") if isinstance(model, dict) else None
        path = raw.get("model_path")
        unpath_adapter(src, path if isinstance(path, str) else None, name if isinstance(name, str) else None)
        tmp = target.with_suffix(".zip.tmp")
        with zipfile.ZipFile(tmp, "w") as zf:
            for f in sorted(p for p in src.rglob("*") if p.is_file()):
                kind = zipfile.ZIP_STORED if f.suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                zf.write(f, arcname=str(Path("adapter") / f.relative_to(src)), compress_type=kind)
        tmp.replace(target)
    logger.info("adapter zipped to %s", target)
    return target


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def push_adapter(run_dir: str | Path, repo_id: str, private: bool = True) -> str:
    """Upload RUN_DIR/adapter to a Hub model repository (created if missing); returns its URL."""
    repo_id = repo_id.strip()
    if not looks_like_hub_id(repo_id):
        raise ExportError(f"{repo_id!r} is not a Hub repository id: use the form your-name/model-name")
    src = adapter_dir(run_dir)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ExportError(f"No Hugging Face token: set the {TOKEN_ENV} environment variable where the app runs "
                          "(the app never asks for the token and never shows it)")
    from huggingface_hub import HfApi

    try:
        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(src), commit_message=f"kft adapter from {Path(run_dir).name}")
    except Exception as exc:  # noqa: BLE001 - network, auth, permissions: one plain message
        # scrub before cutting: a cut through the token would leave a piece that no longer matches
        raise ExportError(f"Push to {repo_id} failed: {_scrub(str(exc), token)[:300]}") from None
    logger.info("adapter of %s pushed to %s", Path(run_dir).name, repo_id)
    return str(url)
