"""Uploaded data files (kft/services/uploads.py): checked again on the server, kept under DATA_DIR/uploads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kft.services import Limits, Workspace


def test_uploads_are_checked_again_and_kept_under_the_data_directory(tmp_path):
    ws = Workspace(tmp_path / "d", Limits(max_upload_bytes=100))
    for name, body, expected in [("rows.pkl", b"x", "only .jsonl"), ("rows.jsonl", b"x" * 101, "the limit is")]:
        (tmp_path / name).write_bytes(body)
        with pytest.raises(ValueError, match=expected):
            ws.uploads.store(tmp_path / name)
    with pytest.raises(ValueError, match="could not be read"):
        ws.uploads.store(tmp_path / "missing.jsonl")
    (tmp_path / "ok.jsonl").write_bytes(b"x")
    stored = ws.uploads.store(tmp_path / "ok.jsonl")
    assert stored.parent == ws.data_dir / "uploads" and stored.name.endswith("-ok.jsonl")
    assert ws.uploads.store(tmp_path / "ok.jsonl") == stored  # the same content is kept once
    ws.limits.read_only = True
    with pytest.raises(ValueError, match="read-only"):
        ws.uploads.store(tmp_path / "ok.jsonl")


def test_a_full_disk_while_storing_an_upload_is_refused_in_kfts_words(tmp_path, monkeypatch):
    """'[Errno 28] No space left on device' reached the page (or an HTTP 500) when the copy hit a full disk."""
    import errno
    import shutil

    ws = Workspace(tmp_path / "d")
    src = tmp_path / "rows.jsonl"
    src.write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")

    def full(a, b, **kw):
        with open(b, "wb") as f:
            f.write(b"{")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(ValueError, match="the upload could not be stored: the disk is full") as err:
        ws.uploads.store(src)
    assert "Errno" not in str(err.value) and "No space left" not in str(err.value)
    assert not list((tmp_path / "d" / "uploads").glob("*"))  # no half-written copy is left


# ---- issue 23 (disk): one copy, a quota, Gradio's copies removed ------------------------------------------------
def _scratch_ws(tmp_path, **limits):
    from kft.services.uploads import scratch_folder

    scratch = scratch_folder(tmp_path / "d")
    scratch.mkdir(parents=True)
    return Workspace(tmp_path / "d", Limits(**limits), upload_scratch=scratch), scratch


def _gradio_upload(scratch, name: str, body: bytes):
    path = scratch / "0123abcd" / name  # where gradio's upload route puts a file: a folder per content
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def test_an_accepted_upload_lies_on_disk_once_and_its_gradio_path_keeps_working(tmp_path):
    """Every accepted upload was stored twice (gradio's copy and kft's): now kft's is a hard link of gradio's."""
    import os

    from kft.services.uploads import _size

    ws, scratch = _scratch_ws(tmp_path)
    src = _gradio_upload(scratch, "rows.jsonl", b'{"instruction": "a", "output": "b"}\n' * 1000)
    stored = ws.uploads.store(src)
    assert os.path.samefile(src, stored) and stored.stat().st_nlink == 2
    assert _size(ws.uploads.folder, scratch) == 36000  # one copy's bytes
    assert ws.uploads.store(src) == stored  # Preview, then Start: the page sends the same path again
    again = _gradio_upload(scratch, "copy.jsonl", src.read_bytes())  # the same content uploaded once more
    assert ws.uploads.store(again).name.endswith("-copy.jsonl") and _size(ws.uploads.folder, scratch) == 2 * 36000
    ws.uploads.release(stored)  # its run was refused (a setting to fix): the store lets it go, gradio's name stays
    assert not stored.exists() and src.read_bytes().startswith(b'{"instruction"')
    assert ws.uploads.store(src).is_file()  # Start again after the fix


def test_uploads_past_the_quota_are_refused_in_kfts_words_after_retention_made_room(tmp_path):
    import os
    import time

    ws, scratch = _scratch_ws(tmp_path, uploads_quota_bytes=2500, uploads_keep_bytes=10_000)
    first = ws.uploads.store(_gradio_upload(scratch, "a.jsonl", b"a" * 1000))
    second = ws.uploads.store(_gradio_upload(scratch, "b.jsonl", b"b" * 1000))
    third = _gradio_upload(scratch, "c.jsonl", b"c" * 1000)
    with pytest.raises(ValueError) as err:  # 3,000 bytes: the other two are minutes old, so kept
        ws.uploads.store(third)
    text = str(err.value)
    assert "quota" in text and "--uploads-quota-mb" in text and "KFT_UPLOADS_QUOTA_MB" in text
    assert "delete runs you no longer need in the runs tab" in text
    assert not third.exists()  # the refused upload's copy left gradio's folder
    assert ws.uploads.quota_problem(600) and ws.uploads.quota_problem(400) is None  # what the upload route asks
    old = time.time() - 3600
    os.utime(first, (old, old))  # past the grace time, and no run points to it
    assert ws.uploads.quota_problem(1000) is None  # room made: the oldest removed, with its name in gradio's folder
    assert not first.exists() and second.is_file() and not list(scratch.rglob("a.jsonl"))
    assert ws.uploads.store(_gradio_upload(scratch, "c.jsonl", b"c" * 1000)).is_file()


def test_the_upload_route_refuses_past_the_quota_and_a_stopped_app_leaves_no_upload_copy(tmp_path):
    """The adversarial run: 40 files of 4.9 MB taken in 4.7 s and kept; gradio's copies stayed after SIGTERM; a file
    gradio refused (its type) kept its copy. ``python app.py`` as a user starts it, stopped with SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from conftest import ROOT, call_api, free_port, wait_until

    data, log, port = tmp_path / "d", tmp_path / "app.log", free_port()
    url = f"http://127.0.0.1:{port}/"
    stale = data / "gradio-uploads" / "left-by-a-killed-app" / "rows.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "KFT_UPLOADS_QUOTA_MB": "2",
           "KFT_UPLOADS_KEEP_MB": "1", "KFT_MAX_UPLOAD_MB": "1"}
    env.pop("GRADIO_TEMP_DIR", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--data-dir", str(data),
                                 "--default-model", "tiny", "--lang", "en"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 180, what="the app to come up", every=0.3)
        assert not stale.exists()  # emptied at start: what a killed process left
        scratch = data / "gradio-uploads"
        big = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.jsonl", b"x" * 1_200_000)}, timeout=60)
        assert big.status_code == 413 and not [p for p in scratch.rglob("*") if p.is_file()]  # over --max-upload-mb
        answers = [httpx.post(f"{url}gradio_api/upload", files={"files": (f"r{i}.jsonl", bytes([65 + i]) * 900_000)},
                              timeout=60) for i in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 413], [a.text for a in answers]
        detail = answers[2].json()["detail"]
        assert "quota" in detail and "--uploads-quota-mb" in detail and "runs tab" in detail, detail
        assert len([p for p in scratch.rglob("*.jsonl")]) == 2  # the refused one was never written
        bad = httpx.post(f"{url}gradio_api/upload", files={"files": ("rows.txt", b"x")}, timeout=60).json()[0]
        event, _ = call_api(url, "/preview_data", model="tiny", data_kind="upload",
                            upload={"path": bad, "orig_name": "rows.txt", "meta": {"_type": "gradio.FileData"}}, lang="en")
        assert event == "error" and not os.path.exists(bad)  # gradio refused its type: its copy is removed
        ok = answers[0].json()[0]
        event, _ = call_api(url, "/preview_data", model="tiny", data_kind="upload",
                            upload={"path": ok, "orig_name": "r0.jsonl", "meta": {"_type": "gradio.FileData"}}, lang="en")
        stored = list((data / "uploads").iterdir())
        assert len(stored) == 1 and stored[0].stat().st_nlink == 2  # stored once: a second name of gradio's copy
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert not scratch.exists() or not [p for p in scratch.rglob("*") if p.is_file()]  # SIGTERM: no copy left
    assert stored[0].is_file() and stored[0].stat().st_nlink == 1  # kft's stored upload stays (the retention rules)


def test_gradio_removes_its_copies_a_day_later_checked_hourly_and_the_store_is_pruned_at_start(tmp_path):
    import os
    import time

    from kft.ui.app import build_app

    ws, scratch = _scratch_ws(tmp_path)
    assert build_app(ws).delete_cache == (3600, 86400)  # gradio's delete_cache: every hour, files older than a day
    stored = ws.uploads.store(_gradio_upload(scratch, "old.jsonl", b"x" * 10))
    old = time.time() - 8 * 86400
    os.utime(stored, (old, old))
    Workspace(tmp_path / "d")  # the app starting again: the retention rules run
    assert not stored.exists()


def test_the_upload_folder_gradio_was_given_never_dangles(tmp_path, monkeypatch):
    """Gradio is given kft's upload folder through a link; emptied at stop, the folder stays, and a second app in the
    process (the tests) finds it there even when the first app's data directory is gone. A dangling link made every
    later upload a server error (Gradio's mkdir(exist_ok=True) raises FileExistsError on it)."""
    import shutil

    from kft.config.app_settings import AppSettings
    from kft.services.uploads import empty_scratch
    from kft.ui.server import own_upload_folder

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    first = own_upload_folder(AppSettings(data_dir=str(tmp_path / "a")))
    (first / "0123" / "x.jsonl").parent.mkdir(parents=True)
    (first / "0123" / "x.jsonl").write_text("{}")
    empty_scratch(first)  # the first app stops
    assert first.is_dir() and not list(first.iterdir())
    alias = Path(os.environ["GRADIO_TEMP_DIR"])
    shutil.rmtree(tmp_path / "a")  # ... and its data directory goes
    second = own_upload_folder(AppSettings(data_dir=str(tmp_path / "b")))
    assert second == first and alias.resolve().is_dir()
    alias.mkdir(exist_ok=True, parents=True)  # what gradio does before each upload: no FileExistsError
