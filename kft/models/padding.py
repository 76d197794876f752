"""The pad token: one that cannot collide with a real token.

A tokenizer whose pad is missing, or is its EOS (Qwen2.5 rebuilt from its GGUF file), is given a pad that no text
ever produces: a never-used special or reserved token it already has (``<|finetune_right_pad_id|>`` in Llama 3,
``<|fim_pad|>`` in Qwen2.5, a reserved token; an added token, or a plain vocabulary entry that no text produces, as
in Qwen2.5 rebuilt from its GGUF file), else a new token and one more embedding row. The choice is a
``PadChoice``, saved in the run's ``template.json`` (kft.data.template) and applied again when the adapter loads.
The new row (the mean of the others) is never a label (labels are -100 at padding) and is kept out of sampling
through ``generation_config.suppress_tokens`` (read by transformers' generate and by kft.engine's sampling).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

# exact names first, in this order; then families of reserved tokens (matched by prefix)
PAD_NAMES = ("<|finetune_right_pad_id|>", "<|finetune_right_pad|>", "<|fim_pad|>", "<pad>", "<|pad|>", "[PAD]",
             "<PAD>", "<fim_pad>")
RESERVED_PREFIXES = ("<|reserved_special_token_", "<|reserved", "<unused", "<|dummy_", "<|placeholder")
NEW_PAD = "<|kft_pad|>"


@dataclass(frozen=True)
class PadChoice:
    """How the pad was chosen: ``kept`` (the tokenizer's own, distinct from EOS), ``reserved`` (an existing never-used
    token) or ``added`` (a new token; the embedding then has ``rows`` rows)."""

    token: str
    id: int
    how: str
    rows: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> PadChoice | None:
        if not isinstance(raw, dict):
            return None
        try:
            return cls(token=str(raw["token"]), id=int(raw["id"]), how=str(raw["how"]), rows=int(raw["rows"]))
        except (KeyError, TypeError, ValueError):
            return None


def _content(token: Any) -> str:
    return getattr(token, "content", None) or str(token)


def _bracketed_pad(name: str) -> bool:
    """A pad sentinel such as ``[PAD151665]`` or ``<|vision_pad|>``, not a word like "keypad"."""
    return "pad" in name.lower() and name.startswith(("<", "[")) and name.endswith((">", "]"))


def _pad_like(name: str) -> bool:
    return name in PAD_NAMES or name.startswith(RESERVED_PREFIXES) or _bracketed_pad(name)


def _unreachable(tokenizer: Any, name: str, i: int) -> bool:
    """True when no text gives token ``i``: its own string is cut into other tokens by the pre-tokenizer."""
    try:
        return tokenizer.encode(name, add_special_tokens=False) != [i]
    except Exception:  # noqa: BLE001 - a tokenizer that cannot encode it cannot produce it either
        return True


def _candidates(tokenizer: Any) -> dict[str, int]:
    """Special and reserved tokens: the added ones, and pad-like tokens of the plain vocabulary that no text gives.
    Qwen2.5 rebuilt from its GGUF file lists ``<|fim_pad|>`` and ``[PAD151665]`` .. ``[PAD151935]`` as plain tokens
    (only three are added tokens), so looking at the added ones alone found none and a new row was added."""
    found = {_content(t): i for i, t in tokenizer.added_tokens_decoder.items()}
    for name, i in tokenizer.get_vocab().items():
        if name not in found and _pad_like(name) and _unreachable(tokenizer, name, i):
            found[name] = i
    return found


def _reserved(tokenizer: Any, rows: int) -> tuple[str, int] | None:
    """The best never-used special or reserved token of the tokenizer that has an embedding row, or None."""
    taken = {tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id}
    usable = {name: i for name, i in _candidates(tokenizer).items() if i not in taken and 0 <= i < rows}
    for name in PAD_NAMES:
        if name in usable:
            return name, usable[name]
    for prefix in RESERVED_PREFIXES:
        found = sorted((i, name) for name, i in usable.items() if name.startswith(prefix))
        if found:
            return found[0][1], found[0][0]
    found = sorted((i, name) for name, i in usable.items() if _bracketed_pad(name))
    return (found[0][1], found[0][0]) if found else None


def _added_names(tokenizer: Any) -> set[str]:
    return {_content(t) for t in tokenizer.added_tokens_decoder.values()}


def needs_pad(tokenizer: Any) -> bool:
    """True when the pad is missing or is the EOS (padding masks built from ids would then hide the answer's EOS)."""
    return tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id


def choose_pad(tokenizer: Any, rows: int) -> PadChoice:
    """The pad for a tokenizer whose model's embedding has ``rows`` rows (the tokenizer is not changed)."""
    if not needs_pad(tokenizer):
        return PadChoice(tokenizer.pad_token, int(tokenizer.pad_token_id), "kept", rows)
    found = _reserved(tokenizer, rows)
    if found is not None:
        return PadChoice(found[0], found[1], "reserved", rows)
    name = NEW_PAD
    while name in tokenizer.get_vocab():
        name = name[:-2] + "_|>"
    return PadChoice(name, len(tokenizer), "added", max(rows, len(tokenizer) + 1))


def apply_pad(tokenizer: Any, model: Any | None, choice: PadChoice) -> None:
    """Make ``choice`` the pad of the tokenizer and, when given, of the model (its embedding resized for an added
    token, its configs told the pad id, the new token kept out of sampling)."""
    if choice.how == "added" and choice.token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"pad_token": choice.token})
    elif choice.how == "reserved" and choice.token not in _added_names(tokenizer):
        # a plain-vocabulary token made a special one (same id): decoding skips it, as a saved and reloaded
        # tokenizer would (transformers turns a pad into an added token when it saves)
        from tokenizers import AddedToken

        tokenizer.add_special_tokens({"pad_token": AddedToken(choice.token, special=True, normalized=False)})
    else:
        tokenizer.pad_token = choice.token
    if tokenizer.pad_token_id != choice.id:
        raise ValueError(f"the pad {choice.token!r} recorded for this model has id {choice.id}, but this tokenizer "
                         f"gives it id {tokenizer.pad_token_id}: the tokenizer is not the one the adapter was trained "
                         "with")
    if model is None:
        return
    if model.get_input_embeddings().weight.shape[0] < choice.rows:
        old = model.get_input_embeddings().weight.shape[0]
        model.resize_token_embeddings(choice.rows, mean_resizing=False)
        with _no_grad():
            for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
                if emb is not None:  # the new row: the mean of the others (deterministic, so a reload gets the same)
                    emb.weight[old:] = emb.weight[:old].float().mean(dim=0).to(emb.weight.dtype)
    model.config.pad_token_id = choice.id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.pad_token_id = choice.id
        if choice.how == "added":
            gen.suppress_tokens = sorted({*(gen.suppress_tokens or []), choice.id})
    logger.info("pad token %r (id %d, %s)", choice.token, choice.id, choice.how)


def _no_grad() -> Any:
    import torch

    return torch.no_grad()
