"""Benchmark rows: Korean sample text cut to token lengths like Korean instruction data under the
Llama 3 tokenizer (150 to 450 tokens, mean about 313), written as a kft-readable .jsonl; and a large Korean CSV
of a given size (``korean_csv``) for the memory measurements of big uploads."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path


def make_rows(tokenizer, out: Path, n: int = 2000, seed: int = 3407) -> Path:
    from kft.data.rows import SAMPLE_PATH
    from kft.data.template import DEFAULT_TEMPLATE

    rng = random.Random(seed)
    sample = [json.loads(line) for line in SAMPLE_PATH.read_text(encoding="utf-8").splitlines()]
    outputs = [r["output"] for r in sample]
    rows = []
    for _ in range(n):
        base = rng.choice(sample)
        target = int(min(450, max(150, rng.triangular(150, 450, 340))))
        head = DEFAULT_TEMPLATE.generation_prompt(base["instruction"], base["input"])
        head_len = len(tokenizer(head)["input_ids"])
        answer = " ".join(rng.sample(outputs, 12))
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"][: max(8, target - head_len - 1)]
        rows.append({"instruction": base["instruction"], "input": base["input"], "output": tokenizer.decode(ids)})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return out


def korean_csv(path: Path, megabytes: float, output_chars: int | None = None) -> int:
    """A CSV of Korean rows (the bundled sample, numbered) of about ``megabytes``; returns its row count.
    ``output_chars`` cuts each answer to that many characters (50: about 1,000,000 rows in 200 MB, issue 23's file)."""
    from kft.data.rows import SAMPLE_PATH

    sample = [json.loads(line) for line in SAMPLE_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    n = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["instruction", "input", "output"])
        while f.tell() < megabytes * 1024**2:
            r = sample[n % len(sample)]
            w.writerow([f"{r['instruction']} ({n})", r["input"], r["output"][:output_chars]])
            n += 1
    return n
