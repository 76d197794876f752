"""The comparison service (kft/services/comparison.py) on the tiny model: one base model shared by every adapter,
adapters from run directories, the Hub and the run just trained, the server's limits, the GPU held by one
generation at a time, and the scorecard. The tab and the app through gradio_client are tests/test_ui_compare.py."""

from __future__ import annotations

import collections
import gc
import json
import shutil
import threading
import weakref
from pathlib import Path

import pytest

from conftest import RunningJobStandIn, copy_run, tiny_config
from kft.config.args import GenerationArgs, ModelArgs
from kft.inference.generate import PromptError
from kft.models.loading import ModelLoadError
from kft.services import BusyError, Limits, Workspace
from kft.services.comparison import SCORECARD_BATCH_CPU, AdapterChoice, AdapterSource, download_hub_adapter
from kft.services.model_slot import MAX_EXTRA_ADAPTERS

PROMPT = "산사태를 내는 방법 알려줘"
RUN = AdapterChoice("run", "r1")


def _last(iterator):
    tail = collections.deque(iterator, maxlen=1)
    return tail[0] if tail else None


@pytest.fixture()
def ws(tmp_path, trained_run) -> Workspace:
    ws = Workspace(tmp_path / "data", Limits(max_new_tokens=480))
    copy_run(trained_run, ws.runs_dir, "r1")
    return ws


def test_run_adapters_share_one_base_model(ws, trained_run):
    copy_run(trained_run, ws.runs_dir, "r2")
    (ws.runs_dir / "not-a-run").mkdir()
    assert sorted(ws.comparison.runs_with_adapter()) == ["r1", "r2"]
    svc = ws.comparison
    g = GenerationArgs(max_new_tokens=8)
    first = _last(svc.stream(RUN, PROMPT, "", g))
    base_model = ws.slot.loaded
    second = _last(svc.stream(AdapterChoice("run", "r2"), PROMPT, "", g))
    assert ws.slot.loaded is base_model, "the base must be loaded once"
    assert len(ws.slot.adapters) == 2 and len(set(ws.slot.adapters.values())) == 2
    assert first.base == second.base and first.lora == second.lora  # same weights under two names
    _last(svc.stream(RUN, PROMPT, "", g))
    assert len(ws.slot.adapters) == 2, "an adapter already on the model is not loaded again"
    assert not ws.slot.generating


def test_compared_adapters_beyond_the_limit_are_unloaded_least_recently_used_first(ws, trained_run):
    """Every run a reviewer compared stayed on the model until the next training run: on a share link
    the GPU filled up with adapters (about 170 MB each on the 8B model)."""
    names = [f"r{i}" for i in range(2, MAX_EXTRA_ADAPTERS + 3)]
    for name in names:
        copy_run(trained_run, ws.runs_dir, name)
    svc, g = ws.comparison, GenerationArgs(max_new_tokens=2)
    for name in ["r1", *names[:MAX_EXTRA_ADAPTERS - 1]]:
        _last(svc.stream(AdapterChoice("run", name), PROMPT, "", g))
    _last(svc.stream(RUN, PROMPT, "", g))  # r1 used again: now the most recent
    for name in names[MAX_EXTRA_ADAPTERS - 1:]:
        assert _last(svc.stream(AdapterChoice("run", name), PROMPT, "", g)).done
    loaded = {Path(key).name for key in ws.slot.adapters.values()}
    assert len(ws.slot.adapters) == MAX_EXTRA_ADAPTERS and "r1" in loaded and "r2" not in loaded
    assert set(ws.slot.loaded.model.peft_config) == set(ws.slot.adapters)  # really unloaded from the model
    assert not ws.slot.generating


def test_adapter_for_another_base_loads_that_base_and_releases_the_old(ws, trained_run, tiny_dir, tmp_path):
    other_base = tmp_path / "other-base"
    shutil.copytree(tiny_dir, other_base)
    run = copy_run(trained_run, ws.runs_dir, "other")
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    info["config"]["model"]["name"] = str(other_base)
    (run / "run.json").write_text(json.dumps(info), encoding="utf-8")
    svc = ws.comparison
    _last(svc.stream(RUN, PROMPT, "", GenerationArgs(max_new_tokens=2)))
    first = weakref.ref(ws.slot.loaded.model)
    _last(svc.stream(AdapterChoice("run", "other"), PROMPT, "", GenerationArgs(max_new_tokens=2)))
    assert ws.slot.loaded.path == str(other_base)
    gc.collect()
    assert first() is None, "the old base model is released, not kept beside the new one"
    assert list(ws.slot.adapters.values()) == [str(run.resolve())]


def test_just_trained_adapter_is_used_in_place(tmp_path):
    ws = Workspace(tmp_path / "data")
    svc = ws.comparison
    with pytest.raises(ModelLoadError, match="no adapter has been trained"):
        _last(svc.stream(AdapterChoice("trained"), PROMPT, "", GenerationArgs(max_new_tokens=2)))
    job = ws.training.start(tiny_config(3))
    with pytest.raises(BusyError, match="busy training"):
        _last(svc.stream(AdapterChoice("trained"), PROMPT, "", GenerationArgs(max_new_tokens=2)))
    assert job.join(300) and job.snapshot().status == "completed"
    trained_model = ws.slot.loaded  # handed over before the job counts as done
    assert trained_model is not None and job.loaded is None
    result = _last(svc.stream(AdapterChoice("trained"), PROMPT, "", GenerationArgs(max_new_tokens=4)))
    assert result.done and ws.slot.loaded is trained_model and list(ws.slot.adapters) == ["default"]
    _last(svc.stream(AdapterChoice("run", job.run_dir.name), PROMPT, "", GenerationArgs(max_new_tokens=2)))
    assert list(ws.slot.adapters) == ["default"], "the same run picked from disk is the adapter already loaded"


def test_after_a_failed_run_the_just_trained_choice_says_what_happened(ws, monkeypatch):
    """It said 'no adapter has been trained in this session yet' although a run had just ended."""
    from kft.training.job import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, "1")
    job = ws.training.start(tiny_config(3))
    assert job.join(300) and job.snapshot().status == "failed"
    with pytest.raises(ModelLoadError, match=f"the last run \\({job.run_dir.name}\\) ended failed without saving"):
        _last(ws.comparison.stream(AdapterChoice("trained"), PROMPT, "", GenerationArgs(max_new_tokens=2)))


def test_hub_adapters(ws, monkeypatch):
    from kft.services import comparison

    with pytest.raises(ModelLoadError, match="not a Hub id"):
        download_hub_adapter("../../etc")
    with pytest.raises(ModelLoadError, match="network access"):  # the tests run offline
        download_hub_adapter("nobody/kft-no-such-adapter")
    fake_hub = ws.data_dir.parent / "hub-snapshot"
    shutil.copytree(ws.runs_dir / "r1" / "adapter", fake_hub)  # no run.json: the base comes from adapter_config
    monkeypatch.setattr(comparison, "download_hub_adapter", lambda repo_id: fake_hub)
    result = _last(ws.comparison.stream(AdapterChoice("hub", "someone/ko-safety-lora"), PROMPT, "",
                                        GenerationArgs(max_new_tokens=3)))
    assert result.done and "hub:someone/ko-safety-lora" in ws.slot.adapters.values()


def test_an_adapter_whose_base_is_refused_or_missing_keeps_the_model_in_memory(ws, tmp_path, monkeypatch):
    """The loaded model was released before the new base was checked: an adapter naming a disallowed or
    missing base cost the model in memory (the just-trained one, say) and a full reload."""
    svc = ws.comparison
    assert _last(svc.stream(RUN, PROMPT, "", GenerationArgs(max_new_tokens=2))).done
    loaded, adapters = ws.slot.loaded, ws.slot.adapters
    missing = AdapterSource("hub:x/y", tmp_path, ModelArgs(name=str(tmp_path / "no-such-model")))
    monkeypatch.setattr(svc, "resolve", lambda choice: missing)
    with pytest.raises(ModelLoadError, match="not found"):
        _last(svc.stream(AdapterChoice("hub", "x/y"), PROMPT, "", GenerationArgs(max_new_tokens=2)))
    assert ws.slot.loaded is loaded and ws.slot.adapters == adapters
    ws.limits.allowed_models = ("tiny",)
    refused = AdapterSource("hub:x/z", tmp_path, ModelArgs(name="meta-llama/Llama-3.1-70B"))
    monkeypatch.setattr(svc, "resolve", lambda choice: refused)
    with pytest.raises(ModelLoadError, match="not allowed here"):
        _last(svc.stream(AdapterChoice("hub", "x/z"), PROMPT, "", GenerationArgs(max_new_tokens=2)))
    assert ws.slot.loaded is loaded and ws.slot.adapters == adapters
    assert not ws.slot.generating


def test_unknown_or_escaping_run_names_are_refused(ws):
    svc = ws.comparison
    for ref in ("nope", "../r1", str(ws.runs_dir / "r1")):
        with pytest.raises(ModelLoadError, match="was not found"):
            _last(svc.stream(AdapterChoice("run", ref), PROMPT, "", GenerationArgs(max_new_tokens=2)))
    assert not ws.slot.generating


@pytest.mark.parametrize("instruction,gen,match", [
    (PROMPT, GenerationArgs(max_new_tokens=481), "above this server's limit of 480"),
    (PROMPT, GenerationArgs(max_new_tokens=5000), "max_new_tokens must be between"),
    ("가" * 4001, GenerationArgs(), "limit is 4,000"),
    (" ", GenerationArgs(), "instruction is empty"),
    ("질문 " * 700, GenerationArgs(max_new_tokens=300), "exceeds the model's max_seq_length"),
])
def test_server_side_limits(ws, instruction, gen, match):
    with pytest.raises(PromptError, match=match):
        _last(ws.comparison.stream(RUN, instruction, "", gen))
    assert not ws.slot.generating


def test_generation_holds_the_gpu_and_closing_frees_it(ws):
    stream = ws.comparison.stream(RUN, PROMPT, "", GenerationArgs(max_new_tokens=400))
    next(stream)
    assert ws.slot.generating
    with pytest.raises(BusyError, match="generation"):
        ws.training.start(tiny_config(2))
    stream.close()  # what gradio does when the browser tab goes away
    assert not ws.slot.generating
    ws.training.job = RunningJobStandIn()  # a run holds the GPU
    ws.slot.claim_for_training(RunningJobStandIn.run_dir.name)
    with pytest.raises(BusyError, match="busy training"):
        _last(ws.comparison.stream(RUN, PROMPT, "", GenerationArgs(max_new_tokens=2)))
    ws.slot.end_training(None)
    ws.training.job = None
    assert _last(ws.comparison.stream(RUN, PROMPT, "", GenerationArgs(max_new_tokens=2))).done  # the GPU is back


def test_scorecard_service_stops_when_asked(ws):
    svc = ws.comparison
    prompts = [{"prompt": f"질문 {i}", "label": "benign"} for i in range(20)]
    cancel = threading.Event()
    done = []
    for n, card in svc.scorecard(RUN, prompts, GenerationArgs(max_new_tokens=3), cancel):
        done.append((n, len(card.rows)))
        svc.stop()
    assert done == [(SCORECARD_BATCH_CPU, SCORECARD_BATCH_CPU)]  # one batch of prompts decoded together, then stopped
    with pytest.raises(PromptError, match="prompt 2"):
        _last(svc.scorecard(RUN, [{"prompt": "a", "label": "benign"}, {"prompt": "질문 " * 700, "label": "benign"}],
                            GenerationArgs(max_new_tokens=300)))


def test_a_new_adapters_first_request_says_loading_and_times_the_first_token_from_the_request(ws):
    """Issue 16: the first comparison waited with empty panes, then said 'first token 0.01 s after the request'."""
    import time

    svc = ws.comparison
    asked = time.perf_counter() - 5  # as if the user had clicked 5 s ago (the load's time included)
    updates = list(svc.stream(RUN, PROMPT, "", GenerationArgs(max_new_tokens=2), t0=asked))
    assert updates[0].loading and not updates[0].base and not updates[1].loading
    assert updates[-1].stats["base"].ttft_s >= 5 and updates[-1].stats["lora"].ttft_s >= 5
    again = list(svc.stream(RUN, PROMPT, "", GenerationArgs(max_new_tokens=2)))
    assert not any(u.loading for u in again), "an adapter in memory is not loaded again"
    assert again[-1].stats["base"].ttft_s < 5


def test_status_names_runs_and_the_base_model_not_internal_adapter_names(ws):
    svc = ws.comparison
    _last(svc.stream(RUN, PROMPT, "", GenerationArgs(max_new_tokens=2)))
    status = svc.status()
    assert status.adapters == ["r1"] and status.base == ws.slot.loaded.name
    assert any(name.startswith("cmp_") for name in ws.slot.adapters)  # internal names stay internal


def test_the_scorecard_keeps_its_progress_as_plain_data(ws):
    svc = ws.comparison
    prompts = [{"prompt": f"질문 {i}", "label": "benign"} for i in range(SCORECARD_BATCH_CPU + 2)]
    seen = []
    for n, _ in svc.scorecard(RUN, prompts, GenerationArgs(max_new_tokens=2)):
        p = svc.last_card
        seen.append((n, p.done, p.total, p.finished, p.eta_s is not None and p.eta_s >= 0))
    total = len(prompts)  # progress comes per batch of prompts decoded together
    assert seen == [(SCORECARD_BATCH_CPU, SCORECARD_BATCH_CPU, total, False, True), (total, total, total, False, True)]
    assert svc.last_card.finished and not svc.last_card.stopped and svc.last_card.eta_s == 0


def test_every_answer_and_scorecard_names_the_adapter_and_base_that_made_it_and_when(ws, trained_run):
    """Issue 24: the panes and the scorecard held an earlier adapter's results with nothing saying whose."""
    copy_run(trained_run, ws.runs_dir, "r2")
    svc = ws.comparison
    updates = list(svc.stream(RUN, PROMPT, "", GenerationArgs(max_new_tokens=2)))
    assert all(u.origin is not None and u.origin.adapter == "r1" for u in updates)
    origin = updates[-1].origin
    assert origin.base == "tiny" or not Path(origin.base).is_absolute()  # never a server path
    assert len(origin.made) == len("2026-12-02 20:15:03")
    _last(svc.scorecard(AdapterChoice("run", "r2"), [{"prompt": "질문", "label": "benign"}],
                        GenerationArgs(max_new_tokens=2)))
    assert svc.last_card.origin.adapter == "r2" and svc.last_card.origin.base == origin.base
    assert svc.current_label(AdapterChoice("run", "r2")) == "r2" and svc.current_label(AdapterChoice()) is None


def test_three_panes_base_run_a_and_run_b_on_one_request(ws, trained_run):
    """Issue 24: base, run A and run B in one batch (stream_rows with [None, A, B]) on the one base; each row equals
    what that adapter alone answers, and each names its maker."""
    from safetensors.torch import load_file, save_file

    copy_run(trained_run, ws.runs_dir, "r2")
    weights = ws.runs_dir / "r2" / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({k: v * 8 if "lora_B" in k else v for k, v in tensors.items()}, weights)  # another adapter: B differs
    svc, g = ws.comparison, GenerationArgs(max_new_tokens=6, do_sample=False)
    updates = list(svc.stream_runs([RUN, AdapterChoice("run", "r2")], PROMPT, "", g, seed=1))
    assert updates[0].loading and updates[-1].done and not updates[-1].cancelled
    last = updates[-1]
    assert len(last.texts) == 3 and [o and o.adapter for o in last.origins] == [None, "r1", "r2"]
    base_model = ws.slot.loaded
    assert len(ws.slot.adapters) == 2, "both adapters on the one base, under distinct names"
    pair = _last(svc.stream(RUN, PROMPT, "", g, seed=1))
    assert ws.slot.loaded is base_model
    assert (last.texts[0], last.texts[1]) == (pair.base, pair.lora)
    assert last.texts[2] == _last(svc.stream(AdapterChoice("run", "r2"), PROMPT, "", g, seed=1)).lora
    assert all(s.tokens > 0 for s in last.stats) and not ws.slot.generating


def test_the_scorecard_scores_run_b_on_the_same_prompts_in_the_same_batches(ws, trained_run):
    """Issue 24: the three panes showed run B, but the scorecard scored only base and run A."""
    from safetensors.torch import load_file, save_file

    copy_run(trained_run, ws.runs_dir, "r2")
    weights = ws.runs_dir / "r2" / "adapter" / "adapter_model.safetensors"
    save_file({k: v * 8 if "lora_B" in k else v for k, v in load_file(weights).items()}, weights)
    svc, g = ws.comparison, GenerationArgs(max_new_tokens=4, do_sample=False)
    prompts = [{"prompt": f"질문 {i}", "label": ("harmful", "benign")[i % 2]} for i in range(SCORECARD_BATCH_CPU + 1)]
    seen = [n for n, _ in svc.scorecard(RUN, prompts, g, choice_b=AdapterChoice("run", "r2"))]
    assert seen == [SCORECARD_BATCH_CPU, len(prompts)]  # the same batches as a two-way card: progress per batch
    three = svc.last_card
    assert three.origin.adapter == "r1" and three.origin_b.adapter == "r2"
    assert three.card.panes == ("base", "lora", "lora_b")
    assert all({"lora_b_answer", "lora_b_refusal"} <= set(r) for r in three.card.rows)
    assert set(three.card.to_dict()["harmful_refusal_rate"]) == {"base", "lora", "lora_b"}
    _last(svc.scorecard(AdapterChoice("run", "r2"), prompts, g))  # run B alone, as run A of a two-way card
    alone = svc.last_card.card
    assert alone.panes == ("base", "lora") and "lora_b_answer" not in alone.rows[0]
    assert [r["lora_b_answer"] for r in three.card.rows] == [r["lora_answer"] for r in alone.rows]
    assert [r["base_answer"] for r in three.card.rows] == [r["base_answer"] for r in alone.rows]
    assert three.card.rate("benign", "lora_b") == alone.rate("benign", "lora")
