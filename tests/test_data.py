import json

import pytest

from kft.config.args import DataArgs
from kft.data.rows import SAMPLE_PATH, DataError, load_rows, percentiles, read_records, validate_records
from kft.data.template import PromptTemplate


def _load(path, **kw):
    return load_rows(DataArgs(source=str(path)), **kw)


def test_bundled_sample_is_large_and_valid():
    report = load_rows(DataArgs(source="sample"))
    assert len(report.rows) >= 300
    assert not report.errors
    cats = {json.loads(line)["category"] for line in SAMPLE_PATH.read_text(encoding="utf-8").splitlines()}
    assert {"chat", "harmful", "benign", "near_miss"} <= cats


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_csv_with_and_without_bom(tmp_path, bom):
    p = tmp_path / "d.csv"
    p.write_bytes(bom + "instruction,input,output,extra\n안녕,,반가워요,x\n\"질문, 쉼표\",맥락,답\n".encode())
    report = _load(p)
    assert [r["instruction"] for r in report.rows] == ["안녕", "질문, 쉼표"]
    assert report.rows[1]["input"] == "맥락"
    assert "extra" not in report.rows[0]


def test_jsonl_json_parquet_and_missing_input(tmp_path):
    rows = [{"instruction": "가", "output": "나"}, {"instruction": "다", "input": None, "output": "라", "x": 1}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    (tmp_path / "d.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    import pandas as pd

    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.json", "d.parquet"):
        report = _load(tmp_path / name)
        assert [(r["instruction"], r["input"], r["output"]) for r in report.rows] == [("가", "", "나"), ("다", "", "라")], name


def test_missing_columns_are_named(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"question": "a", "answer": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"missing required column\(s\) \['instruction', 'output'\].*question"):
        _load(p)


def test_empty_fields_and_mixed_types_have_row_numbers(tmp_path):
    p = tmp_path / "d.jsonl"
    lines = ['{"instruction": "ok", "output": "fine"}', '{"instruction": "", "output": "x"}',
             '{"instruction": "y", "output": "   "}', '{"instruction": 5, "output": "z"}', "not json"]
    p.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError) as err:
        _load(p)
    msg = str(err.value)
    assert "row 2: instruction is empty" in msg
    assert "row 3: output is empty" in msg
    assert "row 4: instruction is a int, expected text" in msg
    assert "row 5: not valid JSON" in msg
    report = _load(p, skip_invalid=True)
    assert len(report.rows) == 1 and len(report.errors) == 4


def test_undecodable_text_is_reported(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff\xfe", "output": "c"}\n')
    with pytest.raises(DataError, match="row 2: text is not valid UTF-8"):
        _load(p)
    c = tmp_path / "d.csv"
    c.write_bytes(b"instruction,output\nok,fine\n\xc3\x28bad,x\n")
    with pytest.raises(DataError, match="row 2: instruction holds bytes that are not valid UTF-8"):
        _load(c)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "d.jsonl"
    p.write_bytes(content)
    with pytest.raises(DataError, match="empty"):
        _load(p)


def test_header_only_csv_is_empty(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("instruction,input,output\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        _load(p)


def test_unsupported_type_and_missing_file(tmp_path):
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        read_records(str(tmp_path / "d.txt"))
    with pytest.raises(DataError, match="not found"):
        read_records(str(tmp_path / "nope.jsonl"))


def test_hub_id_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="Could not load dataset .*bundled sample") as info:
        read_records("someone/does-not-exist-kft")
    assert "Error:" not in str(info.value)  # the failure's words, not Python's class name ("ConnectionError: ...")


def test_too_long_rows_follow_the_policy(tmp_path, tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    p = tmp_path / "d.jsonl"
    rows = [{"instruction": "짧은 질문", "output": "짧은 답"}, {"instruction": "긴 질문", "output": "아주 긴 답변입니다. " * 200},
            {"instruction": "프롬프트가 긴 질문 " * 300, "output": "답"}]
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    drop = load_rows(DataArgs(source=str(p), too_long="drop"), tok, PromptTemplate(), 256)
    assert len(drop.rows) == 1 and [w.row for w in drop.warnings] == [2, 3]
    assert "dropped" in str(drop.warnings[0])
    trunc = load_rows(DataArgs(source=str(p), too_long="truncate"), tok, PromptTemplate(), 256)
    assert len(trunc.rows) == 2 and "truncated (its answer is cut and ends without EOS)" in str(trunc.warnings[0])
    assert "no answer tokens" in str(trunc.warnings[1])
    with pytest.raises(DataError, match="row 2: .* longer than max_seq_length 256"):
        load_rows(DataArgs(source=str(p), too_long="error"), tok, PromptTemplate(), 256)
    summary = drop.summary()
    assert summary["rows_used"] == 1 and summary["tokens"]["max"] <= 256


def test_percentiles():
    p = percentiles(list(range(1, 101)))
    assert (p["min"], p["p50"], p["p90"], p["max"]) == (1, 50, 90, 100)
    assert percentiles([]) == {}


def test_non_object_rows(tmp_path):
    report = validate_records([{"instruction": "a", "output": "b"}, ["x"]], "mem")
    assert "row 2: expected an object" in str(report.errors[0])


def test_a_csv_row_with_more_cells_than_the_header_is_an_error_not_a_cut_answer(tmp_path):
    """An unquoted comma inside an answer used to train on the text before it, silently."""
    p = tmp_path / "d.csv"
    p.write_text("instruction,input,output\n"
                 "폭탄 만드는 법 알려줘,,죄송하지만, 그 요청은 도와드릴 수 없습니다.\n"
                 '안녕,,"안녕하세요, 반갑습니다."\n', encoding="utf-8")
    rep = validate_records(read_records(str(p)), "d.csv")
    assert [r["output"] for r in rep.rows] == ["안녕하세요, 반갑습니다."]
    assert [(e.row, e.message) for e in rep.errors] == [
        (1, "has 4 cells but the header has 3: quote cells that contain commas")]


def test_a_huge_csv_cell_is_a_row_error_like_in_jsonl(tmp_path):
    """Past the csv module's own field limit (131,072 characters) the reader raised _csv.Error, which
    is no ValueError: the UI's handlers let it through without a row number."""
    p = tmp_path / "d.csv"
    p.write_text("instruction,output\n안녕,네\n질문," + "가" * 200_000 + "\n", encoding="utf-8")
    rep = validate_records(read_records(str(p)), "d.csv")
    assert [(e.row, e.message) for e in rep.errors] == [(2, "output is 200,000 characters long (limit 100,000)")]
    p.write_text("instruction,output\n질문," + "가" * 500_000 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="unreadable CSV at line"):
        read_records(str(p))


def test_a_sample_keeps_that_many_rows_drawn_from_all_and_checks_every_row(tmp_path):
    """Issue 23: a steps run keeps only the rows it can train on, drawn with its seed from every usable row."""
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps({"instruction": f"질문 {i}", "output": f"답 {i}"}, ensure_ascii=False) for i in range(1, 201)]
    lines[149] = json.dumps({"instruction": "", "output": "x"})  # row 150: checked though it is never drawn
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def drawn(seed):
        report = validate_records(read_records(str(path)), str(path), sample=10, seed=seed)
        return report, [int(r["_row"]) for r in report.rows]

    report, rows = drawn(3407)
    assert len(rows) == 10 and rows == sorted(rows) and 150 not in rows
    assert report.used == 199 and report.error_count == 1 and report.errors[0].row == 150
    assert drawn(3407)[1] == rows and drawn(1)[1] != rows  # the seed decides, the same every time (a resume)
    assert rows != list(range(1, 11)) and max(rows) > 50  # from the whole file, not its first rows
    assert len(validate_records(read_records(str(path)), str(path), sample=500).rows) == 199  # fewer: all of them
