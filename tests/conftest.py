"""Shared fixtures: the tiny offline model and one short training run reused by several tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the GPU machine: see docs/GPU_TESTS.md)")
    real = os.environ.get("KFT_REAL_MODEL_DIR")
    skip_real = pytest.mark.skip(reason="needs the real model: KFT_REAL_MODEL_DIR=/path/to/qwen15-hf (a transformers "
                                        "directory: /work/shared/realmodel/README.md)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)
        if "realmodel" in item.keywords and not (real and (Path(real) / "config.json").is_file()):
            item.add_marker(skip_real)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    from kft.models.tiny import tiny_model_dir

    return tiny_model_dir()


def tiny_config(max_steps: int = 30, **train):
    from kft.config.args import RunConfig

    cfg = RunConfig()
    cfg.model.name = "tiny"
    cfg.model.max_seq_length = 512
    cfg.data.source = "sample"
    cfg.train.max_steps = max_steps
    cfg.train.learning_rate = 1e-2
    cfg.lora.use_gradient_checkpointing = False
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_dir):
    """A tiny-model run of 30 steps on the sample (reused: it takes ~20 s on 2 cores)."""
    from kft.training.job import TrainingJob

    run_dir = tmp_path_factory.mktemp("runs") / "trained"
    job = TrainingJob(tiny_config(30), run_dir).start()
    assert job.join(600), "training did not finish"
    snap = job.snapshot()
    assert snap.status == "completed", snap.error
    return job


def wait_until(predicate: Callable[[], Any], timeout: float = 180, what: str = "the condition", every: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (and return that); fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class RunningJobStandIn:
    """Stands in for a running TrainingJob (ws.training.active while done is False)."""

    done = False
    run_dir = Path("runs/20250101-000000")


def copy_run(trained_run, runs_dir: Path, name: str) -> Path:
    """A copy of the session's trained run (without its checkpoints) under runs_dir/name."""
    import shutil

    dst = runs_dir / name
    shutil.copytree(trained_run.run_dir, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


def as_killed_after(run, step: int) -> dict:
    """A finished run made to look as if the app was killed after checkpoint-``step``: run.json says running and the
    later checkpoints are gone. Returns run.json as it was."""
    import shutil

    raw = run.read_json()
    run.write_json({**raw, "status": "running"})
    for ckpt in run.checkpoints():
        if int(ckpt.name.split("-")[1]) > step:
            shutil.rmtree(ckpt)
    return raw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(settings, ws=None) -> Iterator[tuple[str, object]]:
    """(url, workspace) of the whole app launched in this process the way app.py launches it."""
    from kft.ui.server import launch, make_workspace

    ws = ws or make_workspace(settings)
    server, url, _ = launch(settings, block=False, ws=ws)
    try:
        yield url, ws
    finally:
        ws.training.stop()
        if ws.training.job is not None:
            ws.training.job.join(60)
        server.get_blocks().close()


_CLIENT: list[httpx.Client] = []


def client() -> httpx.Client:
    """One HTTP client for the session's API calls: a new one per call built an SSL context each time (about 70 ms
    of the 100 ms a cheap call took on 2 cores)."""
    if not _CLIENT:
        _CLIENT.append(httpx.Client(timeout=60))
    return _CLIENT[0]


def _post_json(url: str, data: list[Any]) -> httpx.Response:
    body = json.dumps({"data": data}, allow_nan=True, ensure_ascii=True)  # NaN and "\ud800" as a browser can send them
    return client().post(url, content=body, headers={"content-type": "application/json"}, timeout=60)


def call_raw(base: str, api_name: str, data: list[Any], timeout: float = 300) -> tuple[str, Any]:
    """("complete", outputs) or ("error", message) of one call through Gradio's HTTP API."""
    r = _post_json(f"{base}gradio_api/call{api_name}", data)
    assert r.status_code == 200, (api_name, r.status_code, r.text[:500])
    event_id = r.json()["event_id"]
    event, last = None, None
    with client().stream("GET", f"{base}gradio_api/call{api_name}/{event_id}", timeout=timeout) as resp:
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                raw = line.split(":", 1)[1].strip()
                try:
                    last = json.loads(raw)
                except json.JSONDecodeError:
                    last = raw
                if event == "error" and isinstance(last, dict):
                    last = last.get("error")
                return event, last
    return event or "closed", last


def call_fn(base: str, fn_index: int, data: list[Any], timeout: float = 300,
            session: str | None = None) -> tuple[str, Any]:
    """("complete", outputs) or ("error", message) of one call of the event numbered ``fn_index`` through Gradio's
    queue (POST /gradio_api/queue/join, then its SSE stream), as the page calls them: undocumented events too. A reply
    that is not 200 is ("http <status>", body)."""
    import uuid

    session = session or uuid.uuid4().hex[:11]
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                       "trigger_id": None}, allow_nan=True, ensure_ascii=True)
    r = client().post(f"{base}gradio_api/queue/join", content=body, headers={"content-type": "application/json"},
                   timeout=60)
    if r.status_code != 200:
        return f"http {r.status_code}", r.text[:500]
    with client().stream("GET", f"{base}gradio_api/queue/data", params={"session_hash": session},
                      timeout=timeout) as resp:
        if resp.status_code != 200:
            return f"http {resp.status_code}", resp.read()[:500]
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line.split(":", 1)[1])
            if msg.get("msg") == "process_completed":
                out = msg.get("output") or {}
                if msg.get("success"):
                    return "complete", out.get("data")
                return "error", out.get("error")
            if msg.get("msg") in ("unexpected_error", "close_stream"):
                return msg["msg"], msg.get("message")
    return "closed", None


def call_api(base: str, api_name: str, **values: Any) -> tuple[str, Any]:
    """``call_raw`` by parameter name, with the endpoint's defaults (from /gradio_api/info) for those not given."""
    params = client().get(f"{base}gradio_api/info", timeout=30).json()["named_endpoints"][api_name]["parameters"]
    unknown = set(values) - {p["parameter_name"] for p in params}
    assert not unknown, unknown
    return call_raw(base, api_name, [values.get(p["parameter_name"], p.get("parameter_default")) for p in params])


def tiny_qwen_dir(out: Path, pad: str | None = "eos", reserved: bool = True) -> Path:
    """A tiny random Qwen2 whose tokenizer is like Qwen2.5's as rebuilt from its GGUF file: ``pad='eos'`` makes the
    pad its EOS, ``pad=None`` leaves it without one; ``reserved`` adds Qwen's never-used ``<|fim_pad|>``. The
    embedding has exactly as many rows as the tokenizer has tokens (no spare row)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from kft.models.tiny import _corpus

    eos = "<|endoftext|>"
    specials = [eos, "<|im_start|>", "<|im_end|>", *(["<|fim_pad|>"] if reserved else [])]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos if pad == "eos" else pad,
                                   model_max_length=2048)
    fast.save_pretrained(out)
    config = Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=fast.eos_token_id, bos_token_id=None,
                         pad_token_id=fast.pad_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.float32).save_pretrained(out)
    return out


GGUF_TOKENIZER = ROOT / "tests" / "data" / "qwen25_gguf_tokenizer"  # Qwen2.5-Coder-1.5B's, as rebuilt from its GGUF


def gguf_tokenizer_qwen_dir(out: Path) -> Path:
    """A tiny random Qwen2 with the REAL tokenizer of Qwen2.5-Coder-1.5B as rebuilt from its GGUF file (pad = EOS, no
    added pad token, 151,936 tokens = embedding rows) and the real model's token ids in its config."""
    import shutil

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    real = json.loads((GGUF_TOKENIZER / "config.json").read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(GGUF_TOKENIZER / name, out / name)
    config = Qwen2Config(vocab_size=real["vocab_size"], hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=real["eos_token_id"],
                         bos_token_id=real["bos_token_id"], pad_token_id=real["pad_token_id"])
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.float32).save_pretrained(out)
    return out
