"""The seed's Korean Alpaca template, kept character for character, as a small object. It is saved next to every
adapter (``template.json``) and read back at generation time, so a model is prompted the way it was trained."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KOREAN_ALPACA = (
    "아래에는 작업을 설명하는 지시 사항과 추가적인 컨텍스트를 제공하는 입력이 있습니다. "
    "요청을 적절하게 완료하는 응답을 작성하세요.\n"
    "\n"
    "### instruction:\n"
    "{}\n"
    "\n"
    "### input:\n"
    "{}\n"
    "\n"
    "### output:\n"
    "{}"
)
TEMPLATE_FILE = "template.json"


@dataclass(frozen=True)
class PromptTemplate:
    """A three-slot template: instruction, input, output."""

    name: str = "korean_alpaca"
    text: str = KOREAN_ALPACA

    def apply(self, instruction: str, input: str = "", output: str = "") -> str:  # noqa: A002
        """Fill the three slots."""
        return self.text.format(instruction, input or "", output)

    def training_text(self, instruction: str, input: str, output: str, eos_token: str) -> str:  # noqa: A002
        """Template with the answer plus the tokenizer's EOS, so the model learns to stop."""
        if not eos_token:
            raise ValueError("The tokenizer has no EOS token; training without it makes answers never end")
        return self.apply(instruction, input, output) + eos_token

    def generation_prompt(self, instruction: str, input: str = "") -> str:  # noqa: A002
        """Template with an empty output slot: what the model continues."""
        return self.apply(instruction, input, "")

    def save(self, directory: str | Path, pad: dict[str, Any] | None = None) -> Path:
        """template.json in ``directory``; ``pad``: the pad token chosen when the model loaded
        (kft.models.padding.PadChoice.to_json), so the adapter is loaded with the same one."""
        path = Path(directory) / TEMPLATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        raw: dict[str, Any] = asdict(self)
        if pad is not None:
            raw["pad"] = pad
        path.write_text(json.dumps(raw, ensure_ascii=False, indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> PromptTemplate:
        """The template saved beside an adapter; the seed template if none was saved."""
        path = Path(directory) / TEMPLATE_FILE
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8"))
        template = cls(name=raw.get("name", "custom"), text=raw["text"])
        if template.text.count("{}") != 3:
            raise ValueError(f"{path}: a template needs exactly three '{{}}' slots")
        return template


def saved_pad(directory: str | Path) -> dict[str, Any] | None:
    """The pad choice recorded in ``directory``'s template.json (None: none recorded, as before issue 25)."""
    path = Path(directory) / TEMPLATE_FILE
    if not path.is_file():
        return None
    pad = json.loads(path.read_text(encoding="utf-8")).get("pad")
    return pad if isinstance(pad, dict) else None


DEFAULT_TEMPLATE = PromptTemplate()
