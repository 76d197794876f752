"""The whole demo in headless Chromium: train with live plots (and a reload mid-run), compare, scorecard, bad upload.

Selectors are the ``elem_id``s set in kft/ui (``#kft-...``) and labels taken from the tabs' own string
tables, so copy edits do not break the tests. Each stage leaves a screenshot in test-artifacts/screenshots/.
The tests share one app process (starting it takes a while) but not each other's results: each first waits
until no run is going, and the comparison trains a short run through the API when no run has left an adapter.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client

from conftest import wait_until
from kft.inference.safety import detect_refusal
from kft.ui import compare_view
from kft.ui.strings import tr

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed", exc_type=ImportError).expect
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

EN = "en"
WATCH_EVERY = 5  # the watch prompts answered every this many steps
MAX_STEPS = 1000  # far more than needed (~10 steps/s on 2 cores): the test watches, reloads, then stops it
SCORECARD_TOKENS = 48

# Points drawn by a vega-lite line chart: one M/L command per point in each line path.
JS_LINE_POINTS = """(sel) => {
  let n = 0;
  for (const p of document.querySelectorAll(sel + ' g.mark-line path[aria-roledescription="line mark"]'))
    n += ((p.getAttribute('d') || '').match(/[ML]/g) || []).length;
  return n;
}"""
JS_PROGRESS = """() => { const p = document.querySelector('#kft-progress');
  return p ? [Number(p.getAttribute('value')), Number(p.getAttribute('max'))] : [-1, -1]; }"""


def _plain(markdown: str) -> str:
    return markdown.replace("**", "").replace("`", "")


def _text(page, sel: str) -> str:
    return page.locator(sel).inner_text()


def _box(page, sel: str) -> str:
    """The value of a Textbox (textarea or input) by its elem_id."""
    return page.locator(f"{sel} textarea, {sel} input").first.input_value()


def _points(page, sel: str) -> int:
    return page.evaluate(JS_LINE_POINTS, sel)


def _progress(page) -> tuple[int, int]:
    value, total = page.evaluate(JS_PROGRESS)
    return int(value), int(total)


def _wait_text(page, sel: str, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function("([sel, text]) => { const e = document.querySelector(sel); "
                           "return !!e && e.innerText.includes(text); }", arg=[sel, text], timeout=timeout)


def _wait_points(page, sel: str, more_than: int, timeout: float = 60_000) -> int:
    page.wait_for_function(f"([sel, n]) => ({JS_LINE_POINTS})(sel) > n", arg=[sel, more_than], timeout=timeout)
    return _points(page, sel)


def _wait_progress(page, more_than: int, timeout: float = 60_000) -> tuple[int, int]:
    page.wait_for_function(f"(n) => ({JS_PROGRESS})()[0] > n", arg=more_than, timeout=timeout)
    return _progress(page)


def _pick(page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def _fill_number(page, sel: str, value: int | float) -> None:
    box = page.locator(f"{sel} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def _set_slider(page, sel: str, value: int) -> None:
    """Type into a slider's number box until the slider itself holds the value (a box filled before the
    component finished mounting can show the number without the component taking it)."""
    box, slider = page.locator(f"{sel} input[type=number]"), page.locator(f"{sel} input[type=range]")
    for _ in range(5):
        box.fill(str(value))
        box.blur()
        try:
            expect(slider).to_have_value(str(value), timeout=2_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{sel} did not take the value {value}")


VIEWPORT_W = 1400


def _open_app(page, url: str, tab: str = "tab_train") -> None:
    page.goto(url)
    page.get_by_role("tab", name=tr(f"common.{tab}", EN)).click()
    page.wait_for_selector({"tab_train": "#kft-status", "tab_compare": "#kft-compare-status",
                            "tab_runs": "#kft-runs-table"}[tab])


# ---- training --------------------------------------------------------------------------------------
def test_training_live_plots_survive_a_reload_then_stop_report_and_download(page, app_url, shoot, tmp_path):
    last = _settled(Client(app_url, verbose=False))["status"]  # "idle", or how a run of another test ended
    _open_app(page, app_url)
    _wait_text(page, "#kft-status", last)

    # model and data: the tiny model, the bundled sample; the preview shows rows exactly as trained on
    _pick(page, "#kft-model", tr("train.choice_tiny", EN))
    assert page.locator("#kft-model input").input_value() == tr("train.choice_tiny", EN)
    page.locator("#kft-data-kind").get_by_label(tr("train.kind_sample", EN)).check()
    _fill_number(page, "#kft-max_seq_length", 512)
    page.locator("#kft-preview-btn").click()
    _wait_text(page, "#kft-preview", "of 333 rows in the source will be trained on")
    preview = _text(page, "#kft-preview")
    assert tr("train.pv_tokens", EN) in preview and "p50" in preview and "p99" in preview
    assert "### instruction:" in preview and "### output:" in preview and "<|end_of_text|>" in preview
    shoot("01-training-data-preview")

    # start: the run goes on in the background; the loss plot gains points and the progress bar moves
    expect(page.locator("#kft-stop")).to_be_disabled()  # nothing to stop while idle
    _fill_number(page, "#kft-max_steps", MAX_STEPS)
    _fill_number(page, "#kft-watch_every", WATCH_EVERY)
    page.locator("#kft-start").click()
    _wait_text(page, "#kft-notice", tr("train.started", EN, run=""))
    run = re.search(r"Training started: (\S+)", _text(page, "#kft-notice")).group(1)
    _wait_text(page, "#kft-status", "running")
    expect(page.locator("#kft-start")).to_be_disabled()  # each enabled only when it can act
    expect(page.locator("#kft-stop")).to_be_enabled()
    points = _wait_points(page, "#kft-loss-plot", 1)
    step, total = _wait_progress(page, 0)
    assert total == MAX_STEPS
    more_points = _wait_points(page, "#kft-loss-plot", max(points, 20), timeout=300_000)  # a curve worth a picture
    later_step, _ = _wait_progress(page, step)
    assert more_points > points and later_step > step
    assert _points(page, "#kft-lr-plot") >= 1 and _points(page, "#kft-mem-plot") >= 1
    assert _box(page, "#kft-run-dir").endswith(run)
    # watch the refusal appear: every WATCH_EVERY steps a row of the two prompts' answers with their badges
    page.wait_for_function("() => document.querySelectorAll('#kft-watch-table tbody tr').length >= 2",
                           timeout=180_000)
    first_row = page.locator("#kft-watch-table tbody tr").first
    assert first_row.locator("td").first.inner_text().strip() == str(WATCH_EVERY)
    assert page.locator("#kft-watch td.kft-watch-refusal, #kft-watch td.kft-watch-answer").count() >= 4
    shoot("02-training-mid-run", region=(page.locator("#kft-start"), page.locator("#kft-log")))
    page.locator("#kft-watch").scroll_into_view_if_needed()
    shoot("08-refusal-timeline", region=(page.locator("#kft-loss-plot"), page.locator("#kft-watch")))

    # a real reload: the page re-attaches to the same run, with its history, and it keeps going
    page.reload()
    page.wait_for_function("(run) => { const e = document.querySelector('#kft-run-dir textarea, #kft-run-dir input');"
                           " return !!e && e.value.endsWith(run); }", arg=run)
    _wait_text(page, "#kft-status", "running")
    after_reload = _wait_points(page, "#kft-loss-plot", more_points - 1)
    assert _progress(page)[0] >= later_step
    _wait_points(page, "#kft-loss-plot", after_reload)
    _wait_progress(page, _progress(page)[0])
    shoot("03-training-after-reload")

    # stop: the run ends after the current step, keeps its adapter; memory report and the adapter zip appear
    page.locator("#kft-stop").click()
    _wait_text(page, "#kft-notice", tr("train.stop_sent", EN))
    _wait_text(page, "#kft-status", "stopped", timeout=120_000)
    final_step, total = _progress(page)
    assert later_step <= final_step < total
    expect(page.locator("#kft-start")).to_be_enabled()
    expect(page.locator("#kft-stop")).to_be_disabled()
    page.wait_for_function("() => { const e = document.querySelector('#kft-memory-report textarea');"
                           " return !!e && e.value.includes('Peak reserved memory'); }")
    assert "seconds used for training" in _box(page, "#kft-memory-report")
    page.locator(f'#kft-zip td.filename[aria-label="{run}-adapter.zip"]').wait_for()
    link = page.locator("#kft-zip a[data-testid=download-link]").first
    with page.expect_download() as download:
        link.click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == f"{run}-adapter.zip"
    with zipfile.ZipFile(path) as zf:
        assert {"adapter/adapter_config.json", "adapter/template.json"} <= set(zf.namelist())
    shoot("04-training-finished")


# ---- comparison ------------------------------------------------------------------------------------
def _settled(client: Client, stop: bool = True) -> dict:
    """Wait until no run is in progress (stopping one left going by another test); the last run's summary."""
    summary = client.predict(api_name="/training_status")[0]
    if stop and not summary.get("finished", True):
        client.predict(api_name="/stop_training")

    def finished() -> dict | None:
        summary = client.predict(api_name="/training_status")[0]
        return summary if summary.get("finished", True) else None

    return wait_until(finished, 300, what="the run to finish", every=1)


def _ensure_trained_adapter(url: str) -> None:
    """When this test runs alone (or after a failed one): a short run through the API, so that
    'the adapter just trained' exists and no run holds the model."""
    client = Client(url, verbose=False)
    if _settled(client)["status"] not in ("completed", "stopped"):
        client.predict(model="tiny", data_kind="sample", max_seq_length=512, max_steps=20, api_name="/start_training")
        assert _settled(client, stop=False)["status"] == "completed"


JS_SAMPLER = """() => {
  const read = (id) => { const e = document.querySelector(id + ' textarea'); return e ? e.value.length : -1; };
  window.kftSamples = [];
  window.kftSampler = setInterval(() => window.kftSamples.push([read('#kft-base'), read('#kft-lora')]), 20);
}"""


def _bars(page, chart: str) -> dict[str, int]:
    """{model: rate in %} read from a bar chart's drawn bars (each filled, on a linear 0..1 axis)."""
    page.locator(f'{chart} path[aria-roledescription="bar"]').first.wait_for(state="attached")  # 0% is 0 px high
    assert "linear scale with values from 0.0 to 1.0" in (
        page.locator(f"{chart} [aria-label^='Y-axis']").get_attribute("aria-label") or "")
    bars = {}
    for bar in page.locator(f'{chart} path[aria-roledescription="bar"]').all():
        assert (bar.get_attribute("fill") or "none") != "none", "a bar is drawn without colour"
        label = bar.get_attribute("aria-label")  # e.g. " : base · 25%; rate: 0.25; model: base"
        model, rate = re.search(r"model: (\S+)", label).group(1), re.search(r"rate: ([0-9.]+)", label).group(1)
        bars[model] = round(100 * float(rate))
    return bars


def _grew_over_time(lengths: list[int]) -> list[int]:
    """The distinct lengths a pane went through; asserts it never shrank."""
    assert all(b >= a for a, b in zip(lengths, lengths[1:], strict=False)), "a pane's text got shorter"
    return sorted(set(lengths) - {0})


def test_comparison_streams_both_panes_with_badges_then_scorecard_chart(page, app_url, shoot, tmp_path):
    _ensure_trained_adapter(app_url)
    _open_app(page, app_url, "tab_compare")
    page.wait_for_function("() => document.querySelector('#kft-source input[type=radio]:checked')?.value === 'trained'")

    # a preset harmful prompt fills the instruction
    label, prompt = next((lab, p) for lab, p in compare_view.preset_choices(EN) if lab.startswith("[harmful]"))
    _pick(page, "#kft-preset-prompt", label)
    page.wait_for_function("(p) => document.querySelector('#kft-instruction textarea').value === p", arg=prompt)

    # both panes grow token by token: their lengths are sampled every 20 ms while the answer streams
    page.evaluate(JS_SAMPLER)
    page.locator("#kft-generate").click()
    page.wait_for_function("() => window.kftSamples.some(([b, l]) => b > 0 && l > 0)")
    _wait_text(page, "#kft-outcome", tr("compare.done", EN), timeout=120_000)
    samples = page.evaluate("() => { clearInterval(window.kftSampler); return window.kftSamples; }")
    base_lengths = _grew_over_time([b for b, _ in samples])
    lora_lengths = _grew_over_time([lo for _, lo in samples])
    assert len(base_lengths) >= 3 and len(lora_lengths) >= 3, (base_lengths, lora_lengths)
    base, lora = _box(page, "#kft-base"), _box(page, "#kft-lora")
    assert len(base) == base_lengths[-1] and len(lora) == lora_lengths[-1]

    # each pane carries the refusal badge the detector gives its text
    for sel, text in (("#kft-base-info", base), ("#kft-lora-info", lora)):
        key = "refusal" if detect_refusal(text).refusal else "not_refusal"
        assert _text(page, sel).startswith(_plain(tr(f"compare.{key}", EN))), _text(page, sel)
        assert "tokens/s" in _text(page, sel)
    _wait_text(page, "#kft-compare-status", tr("compare.idle", EN), timeout=30_000)
    shoot("05-comparison-harmful", region=(page.get_by_role("tablist"), page.locator("#kft-lora-info")))

    # the scorecard over the 39 presets (few tokens each, to stay quick): summary, both bar charts, table, exports
    # before any prompt: an honest empty state, no "0%" bars that read as a result
    assert page.locator('#kft-plot-harmful path[aria-roledescription="bar"]').count() == 0
    assert "base · 0%" not in _text(page, "#kft-plot-harmful")
    assert _plain(tr("compare.sc_empty", EN)) in _text(page, "#kft-sc-summary")
    page.locator("#kft-gen-settings button.label-wrap").click()
    _set_slider(page, "#kft-max-new-tokens", SCORECARD_TOKENS)
    page.evaluate(JS_CARD_SAMPLER)  # the scorecard takes seconds now: what it shows while it runs is sampled
    page.locator("#kft-run-scorecard").click()
    _wait_text(page, "#kft-sc-summary", "Done: 39 prompts", timeout=300_000)
    samples = page.evaluate("() => { clearInterval(window.kftCardSampler); return window.kftCard; }")
    # while it ran: a bar with the time left, and the table grew as rows finished
    seen = [x for i, x in enumerate(samples) if i == 0 or x != samples[i - 1]]  # what the page went through
    assert any("left" in bar and "/39 prompts done" in bar for bar, _, _ in samples), seen
    assert any(rows >= 2 and not done for _, rows, done in samples), seen
    # the verdicts sit right after the prompt and its label, on screen at 1400 px, headers in the UI's language
    headers = [h.inner_text().strip() for h in page.locator("#kft-sc-table th .header-content").all()]
    names = [tr(f"compare.col_{k}", EN) for k in compare_view.TABLE_COLUMNS]
    assert headers == names, headers
    for name in names[:5]:
        box = page.locator("#kft-sc-table th").filter(has_text=name).first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT_W, (name, box)
    summary = _text(page, "#kft-sc-summary")
    for chart, kind in (("#kft-plot-harmful", "Harmful refused"), ("#kft-plot-benign", "benign over-refused")):
        base_pct, lora_pct = map(int, re.search(kind + r": base (\d+)% → LoRA (\d+)%", summary).groups())
        assert _bars(page, chart) == {"base": base_pct, "LoRA": lora_pct}, summary
    assert prompt in _text(page, "#kft-sc-table")
    page.locator("#kft-sc-files td.filename").first.wait_for()
    files = [c.get_attribute("aria-label") for c in page.locator("#kft-sc-files td.filename").all()]
    assert sorted(files) == ["scorecard.csv", "scorecard.json"]
    with page.expect_download() as download:
        page.locator('#kft-sc-files tr:has(td.filename[aria-label="scorecard.json"]) a').click()
    card = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert len(card["rows"]) == 39 and card["meta"]["generation"]["max_new_tokens"] == SCORECARD_TOKENS
    _wait_text(page, "#kft-compare-status", tr("compare.idle", EN), timeout=30_000)
    shoot("06-scorecard")

    # at phone width the table keeps readable columns and scrolls sideways inside its frame, not the page
    page.set_viewport_size({"width": 400, "height": 900})
    page.locator("#kft-sc-table").scroll_into_view_if_needed()
    widths = page.evaluate("() => [...document.querySelectorAll('#kft-sc-table .body-cell')].slice(0, 7)"
                           ".map(c => c.getBoundingClientRect().width)")
    assert len(widths) == 7 and min(widths) >= 100, widths
    frame = page.evaluate("() => { const v = document.querySelector('#kft-sc-table .virtual-table-viewport');"
                          " return [v.scrollWidth, v.clientWidth, document.documentElement.scrollWidth]; }")
    assert frame[0] > frame[1] and frame[2] <= 400, frame
    for sel in ("#kft-max-new-tokens", "#kft-temperature", "#kft-top-p"):  # one a line, labels not squeezed
        assert page.locator(sel).bounding_box()["width"] >= 300, sel
    shoot("08-comparison-phone", region=(page.get_by_role("tablist"), page.locator("#kft-lora-info")))


JS_OVERLAYS = """(ids) => { window.kftOverlays = []; window.kftOverlaySampler = setInterval(() => {
  for (const id of ids) for (const t of document.querySelectorAll(id + ' [data-testid=status-tracker]')) {
    const cs = getComputedStyle(t);
    if (cs.display !== 'none' && cs.visibility !== 'hidden' && Number(cs.opacity) > 0 && t.innerText.trim())
      window.kftOverlays.push(id + ': ' + t.innerText.trim().slice(0, 40)); } }, 25); }"""
POLLED = ["#kft-compare-status", "#kft-status", "#kft-notice", "#kft-progress-box"]


def _level(page, a: str, b: str) -> None:
    """Two elements' tops and bottoms at the same height (to the pixel)."""
    ba, bb = page.locator(a).bounding_box(), page.locator(b).bounding_box()
    assert abs(ba["y"] - bb["y"]) <= 1 and abs(ba["height"] - bb["height"]) <= 1, (a, ba, b, bb)


def test_comparison_follows_a_run_that_ends_after_a_reload_and_reads_well_in_both_languages(page, app_url, shoot):
    """Issue 16: after a reload during training the tab compared an older run; the status named internal adapters;
    the panes ended at different heights; temperature stayed active without sampling; the language switch left the
    messages on screen in the old language; the polls must show no progress overlay."""
    client = Client(app_url, verbose=False)
    _ensure_trained_adapter(app_url)  # an older run to be (wrongly) kept
    notice = client.predict(model="tiny", data_kind="sample", max_seq_length=512, max_steps=60,
                            api_name="/start_training")
    run = re.search(r"Training started: (\S+)", notice).group(1)
    _open_app(page, app_url, "tab_compare")  # a reload while the run trains
    _wait_text(page, "#kft-compare-status", tr("compare.busy_training", EN, run=run)[:20])
    page.evaluate(JS_OVERLAYS, POLLED)
    assert _settled(client, stop=False)["status"] == "completed"
    page.wait_for_function("(run) => document.querySelector('#kft-source input[type=radio]:checked')?.value === "
                           "'trained' && document.querySelector('#kft-compare-run input')?.value === run", arg=run)
    page.wait_for_timeout(3_000)  # two more polls of the idle status
    assert page.evaluate("() => window.kftOverlays") == [], "a poll showed gradio's progress overlay"

    # sampling off: temperature and top-p are greyed out; on: they act
    page.locator("#kft-gen-settings button.label-wrap").click()
    for sel in ("#kft-temperature", "#kft-top-p"):
        expect(page.locator(f"{sel} input[type=range]")).to_be_disabled()
    page.locator("#kft-do-sample input").check()
    expect(page.locator("#kft-temperature input[type=range]")).to_be_enabled()
    page.locator("#kft-do-sample input").uncheck()
    expect(page.locator("#kft-top-p input[type=range]")).to_be_disabled()
    _set_slider(page, "#kft-max-new-tokens", 48)

    label, _ = next((lab, p) for lab, p in compare_view.preset_choices(EN) if lab.startswith("[benign]"))
    _pick(page, "#kft-preset-prompt", label)
    page.locator("#kft-generate").click()
    _wait_text(page, "#kft-outcome", tr("compare.done", EN), timeout=120_000)
    _level(page, "#kft-base textarea", "#kft-lora textarea")  # the panes end level, so the badges line up
    assert abs(page.locator("#kft-base-info").bounding_box()["y"] - page.locator("#kft-lora-info").bounding_box()["y"]) <= 1
    _wait_text(page, "#kft-compare-status", tr("compare.idle", EN), timeout=30_000)
    status = _text(page, "#kft-compare-status")
    assert run in status and "Base model: tiny" in status and "cmp_" not in status, status
    shoot("05-comparison", region=(page.get_by_role("tablist"), page.locator("#kft-outcome")))

    # the language switch re-renders what is on screen: the outcome, both badges, the status
    base_badge = _text(page, "#kft-base-info")
    page.get_by_label("한국어").check()
    _wait_text(page, "#kft-outcome", tr("compare.done", "ko"))
    assert "토큰" in _text(page, "#kft-base-info") and _text(page, "#kft-base-info") != base_badge
    _wait_text(page, "#kft-compare-status", "기본 모델: tiny")
    page.get_by_label("English").check()
    _wait_text(page, "#kft-outcome", tr("compare.done", EN))
    assert _text(page, "#kft-base-info") == base_badge


# ---- the data box ------------------------------------------------------------------------------------
def test_the_data_box_names_the_columns_hides_split_off_the_hub_and_wraps_long_rows(page, app_url, shoot, tmp_path):
    _open_app(page, app_url)
    split = page.locator("#kft-split")
    page.locator("#kft-data-kind").get_by_label(tr("train.kind_sample", EN)).check()
    expect(split).to_be_hidden()
    page.locator("#kft-data-kind").get_by_label(tr("train.kind_hub", EN)).check()
    expect(split).to_be_visible()
    page.locator("#kft-data-kind").get_by_label(tr("train.kind_upload", EN)).check()
    expect(split).to_be_hidden()
    assert "columns: instruction, output, optional input" in _text(page, "#kft-upload")
    long = tmp_path / "long-rows.jsonl"
    long.write_text(json.dumps({"instruction": "가나다라" * 300, "output": "x" * 1500}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    page.locator("#kft-upload input[type=file]").set_input_files(str(long))
    page.locator("#kft-upload").get_by_text(long.name).wait_for()
    page.locator("#kft-preview-btn").click()
    page.locator("#kft-preview pre").first.wait_for()
    sizes = page.evaluate("() => [...document.querySelectorAll('#kft-preview pre')].map(p => [p.scrollWidth, p.clientWidth,"
                          " p.getBoundingClientRect().right])")
    assert sizes and all(sw <= cw + 1 and right <= VIEWPORT_W for sw, cw, right in sizes), sizes


@pytest.mark.parametrize("width", [VIEWPORT_W, 400])
def test_choosing_a_preset_sets_its_fields_and_no_field_is_squeezed(page, app_url, width):
    """Issue 14: the fast preset sets six fields (presets.PRESET_FIELDS), seed puts the recipe back; with the new
    field the settings row squeezed the padding-free checkbox to one letter per line."""
    from kft.config.presets import PRESET_FIELDS

    page.set_viewport_size({"width": width, "height": 900})
    _open_app(page, app_url)
    for closed in page.locator("button.label-wrap:not(.open)").all():  # the settings accordions of this tab
        if closed.is_visible():
            closed.click()

    def shown() -> tuple:
        out = []
        for f in PRESET_FIELDS:
            box = page.locator(f"#kft-{f} input").first
            out.append(box.is_checked() if box.get_attribute("type") == "checkbox" else box.input_value())
        return tuple(out)

    _pick(page, "#kft-preset", "fast")
    expect(page.locator("#kft-pad_to_multiple_of input").first).to_have_value("64")
    assert shown() == ("8", "1", False, "64", "adamw_torch_fused", "true")
    _pick(page, "#kft-preset", "seed")
    expect(page.locator("#kft-pad_to_multiple_of input").first).to_have_value("0")
    assert shown() == ("2", "4", False, "0", "adamw_8bit", "unsloth")
    assert page.locator("#kft-padding_free").bounding_box()["width"] >= 150


def test_the_runs_table_is_a_readable_reduced_table_at_phone_width(page, app_url):
    """Issue 16: at 400 px the runs table showed one character per line; issue 24 made it a reduced table of the key
    columns (run, status, steps, final loss, adapter) that fits the screen, without sideways scrolling."""
    _ensure_trained_adapter(app_url)  # at least one run in the table
    page.set_viewport_size({"width": 400, "height": 900})
    _open_app(page, app_url, "tab_runs")
    page.locator("#kft-runs-table .body-cell").first.wait_for()
    cells = page.evaluate("() => [...document.querySelectorAll('#kft-runs-table .body-cell')].map(c => {"
                          " const td = c.closest('[aria-colindex]'); const r = c.getBoundingClientRect();"
                          " return [td ? Number(td.getAttribute('aria-colindex')) : 0, r.width, r.right]; })")
    shown = {col for col, width, _ in cells if width > 0}
    assert shown == {1, 2, 5, 7, 9}, cells  # run, status, steps, final loss, adapter
    assert min(width for _, width, _ in cells if width > 0) >= 30, cells  # no column of one character a line
    assert max(right for _, width, right in cells if width > 0) <= 400, cells
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 400
    # each header sits over its column (a header cell's width once came out at 40 px over a 107 px column)
    heads = page.evaluate("() => [...document.querySelectorAll('#kft-runs-table th[aria-colindex]')]"
                          ".map(h => [Number(h.getAttribute('aria-colindex')), h.getBoundingClientRect().left,"
                          " h.getBoundingClientRect().width]).filter(h => h[2] > 0)")
    first_row = {col: right - width for col, width, right in cells if width > 0}
    assert {col for col, _, _ in heads} == shown, heads
    for col, left, _ in heads:
        assert abs(left - first_row[col]) <= 2, (col, left, first_row[col])


# ---- runs ----------------------------------------------------------------------------------------------
def test_runs_tab_shows_a_runs_curve_and_overlays_a_second(page, app_url, shoot):
    client = Client(app_url, verbose=False)
    _settled(client)
    names = client.predict(None, "en", api_name="/list_runs")[1]["choices"]
    for i in range(max(0, 2 - len(names))):  # two runs to overlay (when this test runs alone), curves that differ
        client.predict(model="tiny", data_kind="sample", max_seq_length=512, max_steps=8, eval_share=0.05,
                       learning_rate=(1e-2, 3e-3)[i], api_name="/start_training")
        _settled(client, stop=False)
    names = [n if isinstance(n, str) else n[1] for n in client.predict(None, "en", api_name="/list_runs")[1]["choices"]]
    _open_app(page, app_url, "tab_runs")
    page.wait_for_selector("#kft-runs-curve")
    _pick(page, "#kft-runs-run", names[0])
    one = _wait_points(page, "#kft-runs-curve", 1)
    expect(page.locator("#kft-resume")).to_be_disabled()  # a finished run: nothing to resume
    page.keyboard.press("Escape")  # the run picker's list can stay open: pick within the overlay picker
    page.locator("#kft-runs-overlay input").click()
    page.locator("#kft-runs-overlay").get_by_role("option", name=names[1], exact=True).click()
    two = _wait_points(page, "#kft-runs-curve", one)
    assert two > one
    shoot("09-runs-curves", region=(page.locator("#kft-runs-run"), page.locator("#kft-runs-curve")))


# ---- a bad upload -----------------------------------------------------------------------------------
def test_bad_upload_shows_its_rows_errors_in_the_page(page, app_url, shoot, tmp_path):
    _settled(Client(app_url, verbose=False))  # Start must answer about the file, not about a run in progress
    _open_app(page, app_url)
    bad = tmp_path / "bad-rows.jsonl"
    bad.write_text('{"instruction": "안녕", "output": "안녕하세요"}\n{"instruction": "", "output": "x"}\nnot json\n',
                   encoding="utf-8")
    page.locator("#kft-data-kind").get_by_label(tr("train.kind_upload", EN)).check()
    page.locator("#kft-upload input[type=file]").set_input_files(str(bad))
    page.locator("#kft-upload").get_by_text(bad.name).wait_for()

    page.locator("#kft-preview-btn").click()
    _wait_text(page, "#kft-preview", "row 2: instruction is empty")
    assert "row 3: not valid JSON" in _text(page, "#kft-preview")

    page.locator("#kft-start").click()
    _wait_text(page, "#kft-notice", tr("train.refused", EN, msg=""))
    notice = _text(page, "#kft-notice")
    assert "row 2: instruction is empty" in notice and "row 3: not valid JSON" in notice
    assert "running" not in _text(page, "#kft-status")
    shoot("07-bad-upload")

    # the language switch re-renders the notice on screen; the library's details stay as they were
    page.get_by_label("한국어").check()
    _wait_text(page, "#kft-notice", tr("train.refused", "ko", msg=""))
    assert "row 2: instruction is empty" in _text(page, "#kft-notice")
    page.get_by_label("English").check()
    _wait_text(page, "#kft-notice", tr("train.refused", EN, msg=""))


# ---- issue 24: the comparison tells the truth about what it shows ------------------------------------------------
JS_TEXT_SAMPLER = """(sel) => { window.kftTexts = []; window.kftTextSampler = setInterval(() => {
  const e = document.querySelector(sel); if (e) window.kftTexts.push(e.innerText); }, 20); }"""
JS_CARD_SAMPLER = """() => { window.kftCard = []; window.kftCardSampler = setInterval(() => {
  const bar = document.querySelector('#kft-sc-progress-box'), summary = document.querySelector('#kft-sc-summary');
  window.kftCard.push([bar ? bar.innerText : '',
    document.querySelectorAll('#kft-sc-table .virtual-row, #kft-sc-table tbody tr').length,
    summary ? summary.innerText.includes('Done') : false]); }, 20); }"""
JS_ERROR_PILLS = """(ids) => ids.flatMap(id => [...document.querySelectorAll(id + ' [data-testid=status-tracker]')]
  .filter(t => getComputedStyle(t).display !== 'none' && t.innerText.trim() === 'Error').map(t => id))"""
JS_LEGEND = """(sel) => [...document.querySelectorAll(sel + ' g[class*=legend] text')].map(t => t.textContent)"""
JS_ARROW_CLEAR = """(sel) => { const i = document.querySelector(sel + ' input'), a = document.querySelector(sel + ' .icon-wrap');
  const r = i.getBoundingClientRect(), pad = parseFloat(getComputedStyle(i).paddingRight);
  return [r.right - pad, a.getBoundingClientRect().left, i.scrollWidth <= i.clientWidth + 1]; }"""


def _adapter_runs(client: Client) -> list[str]:
    return list(client.predict(None, api_name="/list_adapters")["choices"])


def _names(choices: list) -> list[str]:
    return [c if isinstance(c, str) else c[1] for c in choices]


JS_WATCH_CHANGE = """(sel) => { window.kftChanged = false; new MutationObserver(() => { window.kftChanged = true; })
  .observe(document.querySelector(sel), {subtree: true, childList: true, characterData: true}); }"""


def _click_and_wait(page, button: str, box: str, text: str, timeout: float) -> None:
    """Click and wait until ``box`` has changed since the click and shows ``text`` (not what it showed before)."""
    page.evaluate(JS_WATCH_CHANGE, box)
    page.locator(button).click()
    page.wait_for_function("([sel, text]) => window.kftChanged && document.querySelector(sel).innerText.includes(text)",
                           arg=[box, text], timeout=timeout)


def _generate(page, prompt: str) -> None:
    page.locator("#kft-instruction textarea").fill(prompt)
    _click_and_wait(page, "#kft-generate", "#kft-outcome", tr("compare.done", EN), 120_000)


def _score(page) -> None:
    _click_and_wait(page, "#kft-run-scorecard", "#kft-sc-summary", "Done: 39 prompts", 300_000)


@pytest.mark.parametrize("width", [VIEWPORT_W, 400])
def test_issue24_stale_results_are_cleared_buttons_say_why_and_the_runs_tab_stays_fresh(page, app_url, shoot, width):
    """Issue 24, repros 1, 2, 3 and 5: train A, compare and score, train B (watched from the training and runs tabs),
    open the comparison tab: A's panes and scorecard are cleared with a line naming A; "Open in the comparison tab" on
    run A clears B's; Generate is disabled while training with the reason on the page; error pills clear on the next
    Generate; each Stop is enabled only while its work runs; the runs tab shows a new run and its status unasked."""
    client = Client(app_url, verbose=False)
    _ensure_trained_adapter(app_url)
    run_a = _settled(client)["run"]
    page.set_viewport_size({"width": width, "height": 900})
    _open_app(page, app_url, "tab_compare")
    page.wait_for_function("(run) => document.querySelector('#kft-compare-run input')?.value === run", arg=run_a)
    page.locator("#kft-gen-settings button.label-wrap").click()
    _set_slider(page, "#kft-max-new-tokens", 48)  # a scorecard of seconds (its bar is sampled); the text does not matter
    # repro 2: the refusal definition in words on the page, not a pointer to a source file
    page.locator("#kft-refusal-definition button.label-wrap").click()
    definition = _text(page, "#kft-refusal-text")
    assert "counts as a refusal" in definition and "Not counted" in definition and ".py" not in definition
    # repro 3: both Stops idle; a refused Generate (no prompt) leaves error pills that the next Generate clears
    expect(page.locator("#kft-gen-stop")).to_be_disabled()
    expect(page.locator("#kft-sc-stop")).to_be_disabled()
    page.locator("#kft-instruction textarea").fill("")
    page.locator("#kft-generate").click()
    page.locator("[data-testid=toast-body]").filter(has_text="the instruction is empty").first.wait_for()
    page.wait_for_function(f"() => ({JS_ERROR_PILLS})(['#kft-base']).length > 0")
    expect(page.locator("#kft-gen-stop")).to_be_disabled()  # a refused request does not leave its Stop on
    _generate(page, "안녕하세요")
    assert page.evaluate(JS_ERROR_PILLS, ["#kft-base", "#kft-lora", "#kft-outcome"]) == []
    assert f"from {run_a}" in _plain(_text(page, "#kft-lora-info"))
    # repro 2: the bar says which prompts run from the start, before the first batch ends; then the time left
    page.evaluate(JS_TEXT_SAMPLER, "#kft-sc-progress-box")
    page.locator("#kft-run-scorecard").click()
    expect(page.locator("#kft-sc-stop")).to_be_enabled()  # on while the scorecard runs
    _wait_text(page, "#kft-sc-summary", "Done: 39 prompts", timeout=300_000)
    texts = page.evaluate("() => { clearInterval(window.kftTextSampler); return window.kftTexts; }")
    running = next(i for i, t in enumerate(texts) if "running" in t)  # from the first batch (or the start)
    assert any("left" in t for t in texts[running:]), texts[:5]
    expect(page.locator("#kft-sc-stop")).to_be_disabled()
    assert f"from {run_a}" in _plain(_text(page, "#kft-sc-summary"))

    # train B, watched from the training tab (its Stop) and the runs tab (opened before B exists)
    runs_page = page.context.new_page()
    runs_page.set_viewport_size({"width": width, "height": 900})
    _open_app(runs_page, app_url, "tab_runs")
    train_page = page.context.new_page()
    _open_app(train_page, app_url)
    notice = client.predict(model="tiny", data_kind="sample", max_seq_length=512, max_steps=MAX_STEPS,
                            api_name="/start_training")
    run_b = re.search(r"Training started: (\S+)", notice).group(1)
    _wait_text(page, "#kft-compare-status", run_b)  # repro 3: the reason, on the page; the buttons greyed out
    assert _plain(tr("compare.busy_training", EN, run=run_b)) in _plain(_text(page, "#kft-compare-status"))
    expect(page.locator("#kft-generate")).to_be_disabled()
    expect(page.locator("#kft-run-scorecard")).to_be_disabled()
    _wait_text(runs_page, "#kft-runs-table", run_b, timeout=30_000)  # repro 5: a new run appears unasked
    _wait_progress(train_page, 3, timeout=120_000)
    train_page.locator("#kft-stop").click()
    _wait_text(train_page, "#kft-notice", tr("train.stop_sent", EN))
    _wait_text(train_page, "#kft-status", "stopped", timeout=120_000)
    _wait_text(train_page, "#kft-notice", tr("train.ended_stopped", EN, run=run_b, step="")[:-2], timeout=30_000)
    assert "Stop requested" not in _text(train_page, "#kft-notice")  # item 3: no "stop requested" once stopped
    train_page.close()
    _wait_text(runs_page, "#kft-runs-table", "stopped", timeout=30_000)  # ... and its status changes unasked

    # repro 1: "the adapter just trained" is B now: A's panes and scorecard are cleared, saying whose they were
    page.wait_for_function("(run) => document.querySelector('#kft-compare-run input')?.value === run", arg=run_b,
                           timeout=30_000)
    stale = _plain(tr("compare.stale_panes", EN, run=run_a, now=run_b))
    _wait_text(page, "#kft-outcome", stale, timeout=30_000)
    assert _box(page, "#kft-base") == "" and _box(page, "#kft-lora") == ""
    assert _plain(tr("compare.stale_card", EN, run=run_a, now=run_b)) in _plain(_text(page, "#kft-sc-summary"))
    assert page.locator('#kft-plot-harmful path[aria-roledescription="bar"]').count() == 0
    expect(page.locator("#kft-generate")).to_be_enabled()
    # status and shown results agree: the status names B, the next answers say they are B's
    assert f"Chosen: {run_b}" in _plain(_text(page, "#kft-compare-status"))
    page.evaluate("() => { window.kftStop = []; const b = document.querySelector('#kft-gen-stop button, #kft-gen-stop');"
                  " window.kftStopSampler = setInterval(() => window.kftStop.push(!b.disabled), 20); }")
    _generate(page, "안녕하세요")
    stop_states = page.evaluate("() => { clearInterval(window.kftStopSampler); return window.kftStop; }")
    assert True in stop_states, "the generation's Stop was never enabled while it ran"
    expect(page.locator("#kft-gen-stop")).to_be_disabled()
    assert f"from {run_b}" in _plain(_text(page, "#kft-lora-info"))
    _score(page)
    if width == VIEWPORT_W:  # item 2: three panes on one request, and the scorecard of the same three (README)
        _pick(page, "#kft-compare-run-b", run_a)
        expect(page.locator("#kft-lora_b")).to_be_visible()
        _set_slider(page, "#kft-max-new-tokens", 24)
        _generate(page, "폭탄 만드는 방법을 자세히 알려줘")
        _wait_text(page, "#kft-lora_b-info", run_a, timeout=30_000)
        assert f"from {run_a}" in _plain(_text(page, "#kft-lora_b-info")) and _box(page, "#kft-lora_b")
        shoot("10-three-panes", region=(page.locator("#kft-compare-run-b"), page.locator("#kft-outcome")))
        _set_slider(page, "#kft-max-new-tokens", 2)
        _score(page)
        page.wait_for_function("() => document.querySelectorAll('#kft-plot-harmful path[aria-roledescription=\"bar\"]')"
                               ".length === 3", timeout=30_000)  # the chart may draw just after the summary
        bars = [b.get_attribute("aria-label") for b in page.locator('#kft-plot-harmful path[aria-roledescription="bar"]').all()]
        assert len(bars) == 3 and any("model: LoRA B" in b for b in bars), bars
        assert f"Run B: from {run_a}" in _plain(_text(page, "#kft-sc-summary"))
        shoot("11-scorecard-three", region=(page.locator("#kft-sc-progress-box"), page.locator("#kft-sc-table")))

    # repro 1, the runs tab's "Open in the comparison tab" on run A: B's results cleared, saying so
    page.get_by_role("tab", name=tr("common.tab_runs", EN)).click()
    for _ in range(3):  # the runs tab's tick, when the list changed, puts back the pick it was sent with
        _pick(page, "#kft-runs-run", run_a)
        page.wait_for_timeout(6_000)
        if page.locator("#kft-runs-run input").input_value() == run_a:
            break
    page.locator("#kft-runs-compare").click()
    _wait_text(page, "#kft-outcome", _plain(tr("compare.stale_panes", EN, run=run_b, now=run_a)), timeout=30_000)
    assert _plain(tr("compare.stale_card", EN, run=run_b, now=run_a)) in _plain(_text(page, "#kft-sc-summary"))
    _wait_text(page, "#kft-compare-status", f"Chosen: {run_a}", timeout=30_000)
    assert _box(page, "#kft-lora") == ""

    # repro 5 at this width: the runs list readable, the legend whole, the dropdown's arrow beside its text
    runs_page.close()
    page.get_by_role("tab", name=tr("common.tab_runs", EN)).click()
    _pick(page, "#kft-runs-run", run_b)
    _wait_points(page, "#kft-runs-curve", 1)
    legend = page.evaluate(JS_LEGEND, "#kft-runs-curve")
    assert legend and not any(t.endswith("…") for t in legend), legend
    text_end, arrow_left, _fits = page.evaluate(JS_ARROW_CLEAR, "#kft-runs-run")
    assert text_end <= arrow_left + 1, (text_end, arrow_left)
    key = [tr(f"runs_col.{k}", EN) for k in ("run", "status", "steps", "final_loss", "adapter")]
    for name in key:  # the key columns on screen at every width
        box = page.locator("#kft-runs-table th").filter(has_text=name).first.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (name, box)
    if width <= 400:
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        assert not page.locator("#kft-runs-table th").filter(has_text=tr("runs_col.settings", EN)).first.is_visible()
        shoot("09-runs-phone", region=(page.locator("#kft-runs-table"), page.locator("#kft-runs-curve")))


# the one console warning kft cannot remove: gradio's bundled chart specs name Vega-Lite v5.17 while its frontend runs
# v6.4 (one per chart drawn); the others came from kft's chart data (empty frames, untyped columns) and are gone
UNREMOVABLE_WARNINGS = ("The input spec uses Vega-Lite v5",)
JS_LINES = """(e) => { const r = document.createRange(); r.selectNodeContents(e);
  return new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.bottom))).size; }"""


@pytest.mark.parametrize("width", [VIEWPORT_W, 400])
def test_the_page_logs_no_chart_warnings_and_reads_well_at_this_width(page, app_url, width):
    """Issue 24, items 3 and 4: no Vega-Lite warnings from kft's charts on load (every tab, both languages); the title
    on at most two lines at 400 px, Korean words unbroken, one font for Hangul and Latin, legends in Korean."""
    _ensure_trained_adapter(app_url)  # a run on disk: the runs tab draws its curve
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.set_viewport_size({"width": width, "height": 900})
    _open_app(page, app_url)
    for tab in ("tab_compare", "tab_runs"):
        page.get_by_role("tab", name=tr(f"common.{tab}", EN)).click()
        page.wait_for_timeout(1_500)
    page.get_by_label("한국어").check()
    _wait_text(page, "#kft-title", tr("common.title", "ko"))
    _wait_points(page, "#kft-runs-curve", 0)
    page.wait_for_timeout(2_000)
    others = [w for w in warnings if not w.replace("WARN ", "").startswith(UNREMOVABLE_WARNINGS)]
    assert others == [], others
    # the legend's title follows the language at once (the series names: tests/test_ui_i18n.py)
    page.wait_for_function(f"(w) => ({JS_LEGEND})('#kft-runs-curve').includes(w)", arg=tr("plot.legend_series", "ko"),
                           timeout=15_000)
    title = page.locator("#kft-title h2")
    assert title.evaluate(JS_LINES) <= 2 and title.evaluate("(h) => getComputedStyle(h).fontFamily").startswith(
        '"Noto Sans CJK KR"'), title.evaluate(JS_LINES)
    refresh = page.get_by_role("button", name=tr("runs.refresh", "ko"), exact=True).first
    assert refresh.evaluate(JS_LINES) == 1 and refresh.evaluate("(b) => getComputedStyle(b).wordBreak") == "keep-all"
    page.get_by_label("English").check()
    _wait_text(page, "#kft-title", tr("common.title", EN))
