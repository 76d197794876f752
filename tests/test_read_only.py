"""Read-only mode writes nothing kft does not need (issue 23, item 11): its exports are refused in kft's words, so
no file lands in the data directory, kft's export folder or gradio's cache; and gradio's recording route, which
writes what it is sent, is refused."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from conftest import call_api, free_port, running_app
from kft.config.app_settings import AppSettings
from kft.services.exports import export_root
from kft.ui.guard import REFUSAL


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    settings = AppSettings(port=free_port(), data_dir=str(tmp_path_factory.mktemp("read-only")), lang="en",
                           read_only=True, max_steps=2, max_new_tokens=8)
    with running_app(settings) as (url, ws):
        yield url, ws


def files_under(*roots: Path) -> set[Path]:
    return {p for root in roots if root.exists() for p in root.resolve().rglob("*") if p.is_file()}


def test_fifty_settings_exports_write_no_file(app):
    """50 exports left 51 files in gradio's cache: each export is refused now, saying why."""
    url, ws = app
    roots = (Path(ws.data_dir), export_root(Path(ws.data_dir)), Path(os.environ["GRADIO_TEMP_DIR"]))
    before = files_under(*roots)
    for i in range(50):
        event, outputs = call_api(url, "/export_settings", model="tiny", seed=i, lang="en")
        assert event == "complete" and outputs[0] is None, outputs
        assert outputs[-1].startswith(REFUSAL) and "read-only mode" in outputs[-1], outputs
    assert files_under(*roots) - before == set()


def test_the_training_status_offers_no_adapter_zip(app):
    url, _ = app
    event, outputs = call_api(url, "/training_status", lang="en")
    assert event == "complete"
    assert not [o for o in outputs if isinstance(o, dict) and str(o.get("path", "")).endswith(".zip")], outputs


def test_gradios_recording_route_is_refused_in_read_only_mode(app):
    """Issue 23, item 11: it accepted a 50 MB upload; kft.ui.routes closes it (404) for every server, read-only too."""
    url, _ = app
    r = httpx.post(f"{url}gradio_api/process_recording", files={"files": ("a.wav", b"\0" * 50_000)}, timeout=60)
    assert r.status_code == 404, (r.status_code, r.text[:300])
