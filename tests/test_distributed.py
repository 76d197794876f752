"""Data parallel on CPU: torchrun with 2 gloo processes trains the tiny model; only rank 0 writes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["train", "--model", "tiny", "--data", "sample", "--max-seq-length", "512", "--learning-rate", "1e-2",
        "--use-gradient-checkpointing", "false", "--max-steps", "4", "--per-device-train-batch-size", "1"]


def _torchrun(nproc: int, out: Path, accumulation: int, fingerprints: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KFT_TEST_FINGERPRINTS": str(fingerprints), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}  # kft for the worker
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    launcher = [torchrun, "--nproc_per_node", str(nproc), "--master_port", "29517"] if nproc > 1 else [sys.executable]
    cmd = [*launcher, str(ROOT / "tests" / "ddp_worker.py"), *ARGS, "--gradient-accumulation-steps", str(accumulation),
           "--output-dir", str(out)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
def test_two_gloo_processes_train_in_sync_and_only_rank0_writes(tmp_path, tiny_dir):
    fp = tmp_path / "fp"
    fp.mkdir()
    r = _torchrun(2, tmp_path / "ddp", 4, fp)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # rank 0 printed, rank 1 did not: one status line
    assert r.stdout.count("status: completed") == 1
    # the replicas end with identical LoRA weights (DDP averaged the gradients)
    assert (fp / "rank0.txt").read_text() == (fp / "rank1.txt").read_text()
    steps = [json.loads(x)["step"] for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4]  # one writer: no duplicated lines
    info = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert info["status"] == "completed" and "distributed over 2 processes" in info["backend_reason"]
    # same global batch (2 ranks x 1 row x 4 accumulation = 8 rows) as one process with 8 accumulation:
    # the loss curve agrees (the rows differ: the distributed sampler deals them out differently)
    single = _torchrun(1, tmp_path / "single", 8, fp)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp, one = _losses(tmp_path / "ddp"), _losses(tmp_path / "single")
    assert all(abs(a - b) < 0.05 for a, b in zip(ddp, one, strict=True)), (ddp, one)
    # the result loads like any other run
    from kft.config.args import ModelArgs
    from kft.models.loading import load_adapter, load_base

    loaded = load_adapter(load_base(ModelArgs(name="tiny", max_seq_length=512)), tmp_path / "ddp")
    assert "default" in loaded.model.peft_config
