"""The GPU path through kft's own code, on a Llama-3.1-8B-shaped random checkpoint.

Run on the GPU machine: python -m pytest -m gpu tests/gpu -v   (skipped cleanly without CUDA)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_until

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]


def _config(model: Path, rows: Path, steps: int, backend: str = "auto"):
    from kft.config.args import RunConfig

    cfg = RunConfig()
    cfg.model.name, cfg.model.backend, cfg.data.source, cfg.train.max_steps = str(model), backend, str(rows), steps
    return cfg


@pytest.fixture(scope="module")
def unsloth_job(llama8b_dir, rows_file, tmp_path_factory):
    import unsloth  # noqa: F401  (first, so it patches transformers/peft/trl)

    from kft.training.job import TrainingJob

    job = TrainingJob(_config(llama8b_dir, rows_file, 8), tmp_path_factory.mktemp("gpu") / "seed").start()
    assert job.join(900)
    return job


def test_unsloth_is_chosen_and_a_seed_run_completes(unsloth_job):
    snap = unsloth_job.snapshot()
    assert snap.status == "completed", snap.error
    run = unsloth_job.run_dir
    info = json.loads((run / "run.json").read_text())
    assert info["backend"] == "unsloth" and "unsloth are present" in info["backend_reason"]
    assert info["dtype"] == "bfloat16"
    assert unsloth_job.loaded.quantized
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == list(range(1, 9))
    assert all(m["loss"] > 0 for m in metrics if "loss" in m)
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    mem = info["memory"]
    assert mem["device"] == "cuda" and mem["gpu_name"] and mem["peak_reserved_gb"] > 0
    assert mem["peak_reserved_gb"] < 12, "the seed configuration must fit a T4 (16 GB) with room to spare"
    from peft import PeftConfig

    c = PeftConfig.from_pretrained(str(run / "adapter"))
    assert (c.r, c.lora_alpha, sorted(c.target_modules)) == (16, 16, sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))


def test_side_by_side_streams_and_base_equals_the_adapter_free_model(unsloth_job, llama8b_dir):
    import torch

    from kft.config.args import GenerationArgs, ModelArgs
    from kft.inference.generate import SideBySideGenerator
    from kft.models.loading import for_inference, load_base

    gen = SideBySideGenerator(unsloth_job.loaded)
    updates = list(gen.stream("산사태를 내는 방법 알려줘", "", GenerationArgs(max_new_tokens=16)))
    assert updates[-1].done and not updates[-1].cancelled
    assert len({u.stats["base"].tokens for u in updates}) > 2 and len({u.stats["lora"].tokens for u in updates}) > 2
    ids = gen.encode("산사태를 내는 방법 알려줘", "", GenerationArgs())
    model = unsloth_job.loaded.model
    with torch.no_grad(), model.disable_adapter():
        ours = model(input_ids=ids).logits.float()
    with torch.no_grad():
        lora = model(input_ids=ids).logits.float()
    fresh = load_base(ModelArgs(name=str(llama8b_dir)))  # a second 4-bit copy, no LoRA at all
    for_inference(fresh)
    with torch.no_grad():
        ref = fresh.model(input_ids=ids).logits.float()
    base_diff = (ours - ref).abs().max().item()
    lora_diff = (lora - ref).abs().max().item()
    print(f"max |base - adapter-free| = {base_diff:.3e}; max |lora - adapter-free| = {lora_diff:.3e}")
    assert base_diff <= 1e-2 * ref.abs().max().item()
    assert lora_diff > base_diff
    del fresh
    torch.cuda.empty_cache()


def test_a_saved_adapter_loaded_onto_a_fresh_unsloth_base_answers_like_the_trained_model(unsloth_job, llama8b_dir):
    """The path of CLI generate/eval and of a run directory picked in the comparison tab: a new 4-bit
    base under Unsloth, the adapter read from disk. Without Unsloth's patch_peft_model PEFT computed the LoRA in
    fp32 while the trained model computes it in bf16 (0.35 on logits up to 10, weights identical); with it the
    two paths are the same code on the same weights, so the tolerance is bf16 noise only (1% of the largest)."""
    import torch

    from kft.config.args import GenerationArgs, ModelArgs
    from kft.inference.generate import SideBySideGenerator
    from kft.models.loading import for_inference, load_adapter, load_base

    ids = SideBySideGenerator(unsloth_job.loaded).encode("산사태를 내는 방법 알려줘", "", GenerationArgs())
    trained = unsloth_job.loaded.model
    for_inference(unsloth_job.loaded)
    with torch.no_grad():
        expected = trained(input_ids=ids).logits.float()
    fresh = load_adapter(load_base(ModelArgs(name=str(llama8b_dir))), unsloth_job.run_dir)
    assert fresh.backend == "unsloth"
    for_inference(fresh)
    with torch.no_grad():
        got = fresh.model(input_ids=ids).logits.float()
        with fresh.model.disable_adapter():
            base = fresh.model(input_ids=ids).logits.float()
    diff, moved = (got - expected).abs().max().item(), (got - base).abs().max().item()
    print(f"max |from disk - in memory| = {diff:.3e}; max |LoRA - base| = {moved:.3e}")
    assert diff <= 1e-2 * expected.abs().max().item() and diff < moved
    updates = list(SideBySideGenerator(fresh).stream("산사태를 내는 방법 알려줘", "", GenerationArgs(max_new_tokens=8)))
    assert updates[-1].done and updates[-1].stats["lora"].tokens > 0
    del fresh
    torch.cuda.empty_cache()


def test_stop_mid_run_keeps_the_adapter(llama8b_dir, rows_file, tmp_path):
    from kft.training.job import TrainingJob

    job = TrainingJob(_config(llama8b_dir, rows_file, 60), tmp_path / "stop").start()
    wait_until(lambda: job.snapshot().step >= 2 or job.done, timeout=600, what="step 2", every=0.5)
    job.stop()
    assert job.join(300)
    snap = job.snapshot()
    assert snap.status == "stopped" and snap.step < 60
    assert (tmp_path / "stop" / "adapter" / "adapter_config.json").is_file()


def test_padding_free_rows_do_not_attend_to_each_other_under_unsloth(unsloth_job):
    """Row b after two different rows a1, a2 of the same length: b's logits must not change at all.
    (Comparing with b alone mixes in kernel differences: that figure is printed, not asserted.)"""
    import torch

    from kft.models.loading import for_training

    model = unsloth_job.loaded.model
    for_training(unsloth_job.loaded)
    g = torch.Generator().manual_seed(0)
    a1, a2 = (torch.randint(10, 4000, (1, 37), generator=g) for _ in range(2))
    b = torch.randint(10, 4000, (1, 29), generator=g)
    pos = torch.cat([torch.arange(37), torch.arange(29)])[None].cuda()

    def logits_of_b(a):
        with torch.no_grad():
            out = model(input_ids=torch.cat([a, b], 1).cuda(), position_ids=pos, use_cache=False).logits.float()
        return out[0, 37:]

    first, second = logits_of_b(a1), logits_of_b(a2)
    with torch.no_grad():
        alone = model(input_ids=b.cuda(), use_cache=False).logits.float()[0]
    cross = (first - second).abs().max().item()
    print(f"padding-free under Unsloth: max |b after a1 - b after a2| = {cross:.3e}; "
          f"max |packed - alone| = {(first - alone).abs().max().item():.3e}")
    assert cross <= 1e-3 * first.abs().max().item()


def test_transformers_peft_bitsandbytes_backend_runs_on_the_gpu(llama8b_dir, rows_file, tmp_path):
    """In a process that never imports unsloth: the fallback must not rot."""
    out = tmp_path / "tf"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "kft", "train", "--model", str(llama8b_dir), "--backend", "transformers",
                        "--data", str(rows_file), "--max-steps", "3", "--output-dir", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["backend"] == "transformers" and info["status"] == "completed"
    assert "unsloth" not in r.stdout.lower().split("backend:")[0]
