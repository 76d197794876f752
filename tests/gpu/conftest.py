"""GPU fixtures: a random-weight checkpoint with Llama-3.1-8B's exact shapes and benchmark rows.

KFT_GPU_MODEL names an existing checkpoint directory; otherwise one is built (about 25 s, 16 GB).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # bench/ is on the path: pyproject's pytest pythonpath


def pytest_collection_modifyitems(config, items):
    """The engine's tests last: the seed run's memory test reads a process-wide figure (reserved memory), which the
    engine tests' models and captures raise (18.1 GB seen on the H200 when they ran first, 6.2 GB alone)."""
    items.sort(key=lambda item: "test_gpu_engine" in item.nodeid)


def pytest_configure(config):
    """Import Unsloth first where it is installed, as the app does at start (it patches transformers, peft and trl):
    every GPU test then runs in the process the app runs in, the transformers-backend ones included."""
    try:
        import torch

        if torch.cuda.is_available():
            import unsloth  # noqa: F401
    except ImportError:
        pass


@pytest.fixture(scope="session")
def llama8b_dir() -> Path:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from checkpoint import build

    return build(Path(os.environ.get("KFT_GPU_MODEL", ROOT / ".ckpt" / "llama31-8b-random")))


@pytest.fixture(scope="session")
def rows_file(llama8b_dir, tmp_path_factory) -> Path:
    from transformers import AutoTokenizer

    from rows import make_rows

    return make_rows(AutoTokenizer.from_pretrained(llama8b_dir), tmp_path_factory.mktemp("rows") / "rows.jsonl", n=400)
