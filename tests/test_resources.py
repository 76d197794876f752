"""Resources (issue 15): large uploads previewed and checked in bounded memory; what is kept on disk, and for how long."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT
from kft.data.rows import SAMPLE_PATH
from rows import korean_csv

SAMPLE_ROWS = [json.loads(line) for line in SAMPLE_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


# the peak is this process's VmHWM: ru_maxrss would count the RSS of the (large) pytest process that forked it
PREVIEW_RSS = """
import json, sys
import psutil
from kft.config.args import DataArgs
from kft.training.memory import _vm_hwm_bytes
from kft.training.preflight import load_tokenizer, preview_data
load_tokenizer("tiny")
start = psutil.Process().memory_info().rss
pv = preview_data(DataArgs(source=sys.argv[1]), "tiny", 512)
peak = _vm_hwm_bytes()
print(json.dumps({"growth_mb": (peak - start) / 2**20, "summary": pv.summary, "measured": pv.measured}))
"""


def test_a_large_upload_is_previewed_in_bounded_memory(tmp_path, tiny_dir):
    """A 193 MB CSV took the server from 0.64 to 11.1 GB. The target: at most 1 GB growth for 200 MB, so a 24 MB
    file may grow the process by at most 120 MB (it took 2.2 GB for 30 MB before)."""
    path = tmp_path / "big.csv"
    rows = korean_csv(path, 24)
    out = subprocess.run([sys.executable, "-c", PREVIEW_RSS, str(path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    from kft.training.preflight import CHECKED_ROWS

    assert result["summary"]["rows_in_source"] == rows > CHECKED_ROWS  # counted from the file's lines
    assert result["summary"]["rows_checked"] == result["summary"]["rows_used"] == CHECKED_ROWS  # the first rows only
    assert 0 < result["measured"] < rows  # token lengths from the first rows, and the page says so
    assert result["growth_mb"] < 120, result


def _ten_million_rows(path):
    """A Parquet file of 10,000,000 rows in about 50 KB (one row repeated): its preview took 84 s and blocked Start
    for 71 s (189 s and 101 s on this 2-core machine) when every row was read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 10_000_000
    pick = pa.array([0] * n)
    pq.write_table(pa.table({"instruction": pa.array(["안녕"]).take(pick), "output": pa.array(["네"]).take(pick)}),
                   path, row_group_size=n)
    return n


def test_a_parquet_file_of_millions_of_rows_is_previewed_and_checked_in_bounded_time(tmp_path, tiny_dir):
    import time

    from kft.config.args import DataArgs, RunConfig
    from kft.services.limits import planned_steps
    from kft.training.preflight import CHECKED_ROWS, check_data, load_tokenizer, preview_data
    from kft.ui.train_form import preview_markdown

    path = tmp_path / "ten_m.parquet"
    n = _ten_million_rows(path)
    load_tokenizer("tiny")
    t = time.perf_counter()
    pv = preview_data(DataArgs(source=str(path)), "tiny", 512)
    check_data(DataArgs(source=str(path)))  # what Start runs before a run is claimed
    cfg = RunConfig()
    cfg.data.source, cfg.train.max_steps, cfg.train.num_train_epochs = str(path), 0, 1
    steps = planned_steps(cfg)  # the server's step limit for an epoch run: rows from the metadata
    took = time.perf_counter() - t
    assert took < 15, took  # 0.6 s measured (the three together); 290 s before
    assert pv.summary["rows_in_source"] == n and pv.summary["rows_checked"] == CHECKED_ROWS
    assert steps == n // 8  # batch 2 x accumulation 4
    text = preview_markdown(pv, "en")
    assert "the source holds 10,000,000 rows" in text and "Only the first 10,000 were read" in text


def test_csv_and_jsonl_previews_read_only_the_first_rows_and_count_the_rest_from_lines(tmp_path, monkeypatch):
    from kft.config.args import DataArgs
    from kft.data import rows as data
    from kft.training import preflight

    monkeypatch.setattr(preflight, "CHECKED_ROWS", 50)
    row = {"instruction": "질문", "output": "답"}
    (tmp_path / "r.jsonl").write_text("\n".join([json.dumps(row, ensure_ascii=False)] * 300 + ["", "{bad"]) + "\n",
                                      encoding="utf-8")
    (tmp_path / "r.csv").write_text("instruction,output\n" + "질문,답\n" * 299 + "질문,", encoding="utf-8")
    read: list[int] = []

    def counted(*a):
        for r in data.iter_records(*a):
            read.append(1)
            yield r

    monkeypatch.setattr(preflight, "iter_records", counted)
    for name in ("r.jsonl", "r.csv"):
        read.clear()
        pv = preflight.preview_data(DataArgs(source=str(tmp_path / name)), "no/such-model", 512)
        assert len(read) == 50, name  # rows parsed
        assert pv.summary["rows_checked"] == 50 and pv.summary["errors"] == 0, (name, pv.summary)
        assert pv.summary["rows_in_source"] == (301 if name == "r.jsonl" else 300), name  # the bad last row counts
        preflight.check_data(DataArgs(source=str(tmp_path / name)))  # the bad row after the first 50: the run's


def test_a_report_counts_every_problem_but_keeps_only_the_first(monkeypatch):
    from kft.data import rows as data

    monkeypatch.setattr(data, "MAX_KEPT_PROBLEMS", 5)
    report = data.validate_records(({"instruction": "", "output": "x"} for _ in range(50)), "mem", keep=0)
    assert report.summary()["errors"] == 50 and len(report.errors) == 5
    assert report.problem_lines(3)[-1] == "... and 47 more"


def test_a_big_json_file_is_refused_with_what_to_do_instead(tmp_path, monkeypatch):
    """A .json file is parsed whole; past the limit it must be .jsonl, which is read row by row."""
    import pytest

    from kft.data import files as datafiles
    from kft.data import rows as data

    monkeypatch.setattr(datafiles, "JSON_MAX_BYTES", 100)
    p = tmp_path / "rows.json"
    p.write_text(json.dumps(SAMPLE_ROWS[:5], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(data.DataError, match=r"read whole.*Save it as \.jsonl"):
        data.read_records(str(p))


def test_the_preview_says_how_many_rows_its_token_lengths_come_from():
    from kft.training.preflight import DataPreview
    from kft.ui.train_form import preview_markdown

    summary = {"rows_in_source": 9000, "rows_used": 9000, "errors": 0, "warnings": 0, "tokens": {}}
    assert "from the first 2,000 rows" in preview_markdown(DataPreview("x.csv", summary, measured=2000), "en")
    assert "first" not in preview_markdown(DataPreview("x.csv", summary), "en")


# ---- disk: uploads, exports, checkpoints -------------------------------------------------------------------
def _aged(path, days: float) -> None:
    import os
    import time

    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_uploads_are_kept_by_age_and_total_size_but_never_one_a_run_points_to(tmp_path):
    from kft.runs.store import RunDir
    from kft.services import Limits, Workspace

    ws = Workspace(tmp_path / "d", Limits(uploads_keep_bytes=3000, uploads_keep_days=7))
    stored = []
    for i in range(4):
        (tmp_path / f"u{i}.jsonl").write_bytes(str(i).encode() * 1000)
        stored.append(ws.uploads.store(tmp_path / f"u{i}.jsonl"))
    assert all(p.is_file() for p in stored)  # all within the last 10 minutes: a run may be starting from them
    for days, p in zip((9, 3, 2, 1), stored, strict=True):
        _aged(p, days)
    run = RunDir(ws.runs_dir / "20260101-000000")
    run.path.mkdir()
    run.write_json({"status": "completed", "config": {"data": {"source": str(stored[0])}}})
    (tmp_path / "u4.jsonl").write_bytes(b"4" * 1000)
    newest = ws.uploads.store(tmp_path / "u4.jsonl")
    # u0 is old but a run points to it (it counts, though); u1 and u2 go for the total (5,000 bytes > 3,000)
    assert [p.is_file() for p in (*stored, newest)] == [True, False, False, True, True]
    _aged(stored[3], 8)
    assert ws.uploads.prune() == [stored[3].name]  # older than 7 days


def test_a_refused_upload_is_not_stored_and_its_copy_in_the_upload_folder_is_removed(tmp_path):
    import pytest

    from kft.services import Limits, Workspace

    scratch = tmp_path / "gradio"
    scratch.mkdir()
    ws = Workspace(tmp_path / "d", Limits(max_upload_bytes=100), upload_scratch=scratch)
    (scratch / "big.jsonl").write_bytes(b"x" * 101)
    (scratch / "rows.pkl").write_bytes(b"x")
    (tmp_path / "elsewhere.pkl").write_bytes(b"x")
    for path in (scratch / "big.jsonl", scratch / "rows.pkl", tmp_path / "elsewhere.pkl"):
        with pytest.raises(ValueError):
            ws.uploads.store(path)
    assert not (scratch / "big.jsonl").exists() and not (scratch / "rows.pkl").exists()
    assert (tmp_path / "elsewhere.pkl").exists()  # only gradio's upload folder is tidied
    assert not (ws.data_dir / "uploads").exists() or not list((ws.data_dir / "uploads").iterdir())
    (scratch / "ok.jsonl").write_bytes(b"x")
    stored = ws.uploads.store(scratch / "ok.jsonl")
    ws.uploads.release(stored)  # its preview or run was refused
    assert not stored.exists() and (scratch / "ok.jsonl").exists()
    ws.uploads.release(scratch / "ok.jsonl")  # never a file outside the store
    assert (scratch / "ok.jsonl").exists()


def test_exports_share_one_temp_folder_emptied_at_start_and_capped_per_kind(tmp_path):
    from kft.services import Workspace
    from kft.services.exports import ExportFolder

    ws = Workspace(tmp_path / "d")
    first = ws.exports.new("settings")
    (first / "kft-run.yaml").write_text("x", encoding="utf-8")
    assert first.parent.parent == ws.exports.root and not first.is_relative_to(ws.data_dir)
    again = Workspace(tmp_path / "d")  # a new process on the same data directory
    assert again.exports.root == ws.exports.root and not first.exists()
    capped = ExportFolder(tmp_path / "x", keep=3)
    made = [capped.new("scorecards") for _ in range(5)]
    assert [p.exists() for p in made] == [False, False, True, True, True]
    assert capped.new("downloads", "abc") == capped.new("downloads", "abc")  # a key names one folder, reused


def test_checkpoints_are_pruned_to_the_newest_and_the_run_resumes_from_the_last_complete(tmp_path, tiny_dir):
    from conftest import tiny_config
    from kft.runs.store import RunDir
    from kft.training.job import TrainingJob

    job = TrainingJob(tiny_config(5, save_steps=1, save_total_limit=2), tmp_path / "run").start()
    assert job.join(300) and job.snapshot().status == "completed", job.snapshot().error
    run = RunDir(tmp_path / "run")
    assert [p.name for p in run.checkpoints()] == ["checkpoint-4", "checkpoint-5"]
    assert run.last_complete_checkpoint().name == "checkpoint-5"
