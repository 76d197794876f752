"""Uploaded data files (kft/services/uploads.py): checked again on the server, kept under DATA_DIR/uploads."""

from __future__ import annotations

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
