"""The last line at the UI edge: whatever a request sends, its reply is a result or a kft message.

Every kft refusal has one shape: its text starts with ``REFUSAL`` (``Tab.notice`` and ``Tab.error`` write it).
Gradio's own preprocessing (a choice not offered, a number it cannot read, too few values) and any exception kft did
not expect become such a message here; the traceback goes to the server log, never to the page. The classes of bad
input are still fixed where they enter (kft.config.validation, the form's parser, the file readers): this only catches what
slips past them.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.exceptions import Error

from .strings import DEFAULT_LANG, LANGS, tr

logger = logging.getLogger(__name__)

REFUSAL = "⚠️"


def refusal(message: str) -> str:
    """``message`` in the one shape of a kft refusal."""
    return message if message.startswith(REFUSAL) else f"{REFUSAL} {message}"


def _lang(values: list[Any], default: str = DEFAULT_LANG) -> str:
    """The language: the last input of every kft event (the server's --lang, ``default``, if it is not one)."""
    last = values[-1] if values else None
    return last if isinstance(last, str) and last in LANGS else default


def _failing_block(block_fn: Any, inputs: list[Any], why: str) -> Any:
    """The first input gradio could not take (None if it cannot be told)."""
    pairs = list(zip(block_fn.inputs, inputs, strict=False))
    if "file type" in why.lower():  # said of a file before any value is preprocessed
        return next((b for b, v in pairs if getattr(b, "file_types", None) and v), None)
    for block, value in pairs:
        try:
            if not getattr(block, "data_model", None):  # files are checked on their way to the cache
                block.preprocess(value)
        except Exception:  # noqa: BLE001 - we only look for the one that fails
            return block
    return None


def _refused_value(block_fn: Any, inputs: list[Any], why: str, lang: str) -> str:
    """What kft says about a value gradio's preprocessing refused (gradio's own words name Python types)."""
    block = _failing_block(block_fn, inputs, why)
    field = str(getattr(block, "label", None) or tr("guard.a_value", lang))[:80]
    if getattr(block, "file_types", None) and "file type" in why.lower():
        return tr("guard.bad_file_type", lang, field=field, types=", ".join(map(str, block.file_types)))
    if block is not None and ("maximum" in why or "minimum" in why) and hasattr(block, "maximum"):
        return tr("guard.out_of_range", lang, field=field, lo=block.minimum, hi=block.maximum)
    if "choices" in why:
        return tr("guard.not_a_choice", lang, field=field)
    return tr("guard.bad_value", lang, field=field)


class GuardedBlocks(gr.Blocks):
    """gr.Blocks whose events answer every request with a result or a kft message (paths under ``data_dir`` shown
    relative to it)."""

    def __init__(self, *args: Any, data_dir: str | Path | None = None, lang: str = DEFAULT_LANG,
                 discard: Any = None, **kwargs: Any) -> None:
        """``discard(path)``: removes a refused upload's copy from gradio's upload folder (UploadStore.discard)."""
        super().__init__(*args, **kwargs)
        self.data_dir, self.lang = data_dir, lang  # lang: the server's, for a request that sends none (or a bad one)
        self.discard = discard

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False) -> Any:
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except Exception as exc:  # noqa: BLE001 - gradio's own checks of what a request sent
            logger.info("request to %s refused before it ran: %s", block_fn.api_name, str(exc)[:300])
            self._discard_files(inputs)
            lang = _lang(inputs, self.lang)
            try:
                text = _refused_value(block_fn, inputs, str(exc), lang)
            except Exception:  # noqa: BLE001 - naming the field must never be what fails
                logger.exception("could not name the refused value of %s", block_fn.api_name)
                text = tr("guard.bad_value", lang, field=tr("guard.a_value", lang))
            raise Error(refusal(text), print_exception=False) from exc

    def _discard_files(self, inputs: list[Any]) -> None:
        """The uploads a refused request sent (a file type gradio refused) leave gradio's upload folder."""
        for value in inputs:
            path = value.get("path") if isinstance(value, dict) else None
            if self.discard is not None and isinstance(path, str):
                try:
                    self.discard(path)
                except OSError:
                    logger.warning("could not remove a refused upload")

    async def call_function(self, block_fn: Any, processed_input: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().call_function(block_fn, processed_input, *args, **kwargs)
        except Error as exc:
            exc.message = scrub_paths(str(exc.message), self.data_dir)
            raise
        except Exception as exc:  # noqa: BLE001 - the last resort: log it, answer in kft's words
            raise _unexpected(block_fn, processed_input if isinstance(processed_input, list) else [],
                              self.lang) from exc

    async def postprocess_data(self, block_fn: Any, predictions: Any, state: Any) -> Any:
        try:
            return await super().postprocess_data(block_fn, predictions, state)
        except Error:
            raise
        except Exception as exc:  # noqa: BLE001 - an output gradio could not send
            raise _unexpected(block_fn, [], self.lang) from exc


def _unexpected(block_fn: Any, inputs: list[Any], default: str = DEFAULT_LANG) -> Error:
    """The answer to an exception kft did not expect (logged here with its traceback)."""
    logger.exception("unexpected error in %s", block_fn.api_name or block_fn.name)
    return Error(refusal(tr("guard.unexpected", _lang(inputs, default))), print_exception=False)


def _gradio_caches() -> set[str]:
    """Gradio's upload folder as Gradio names it (kft's alias in the temp folder) and as it resolves."""
    named = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    return {str(named.absolute()), str(named.resolve())}


def scrub_paths(text: str, data_dir: str | Path | None) -> str:
    """``text`` with the server's absolute paths shown as names: relative to the data directory (runs/..., uploads/...),
    and a file in Gradio's upload cache as its name only; text that is not valid Unicode is escaped (it cannot be
    sent as JSON)."""
    for cache in _gradio_caches():
        text = re.sub(re.escape(cache + os.sep) + r"[^/\s'\"]+/", "", text)
    if data_dir is not None:
        root = str(Path(data_dir).resolve()).rstrip(os.sep) + os.sep
        text = text.replace(root, "").replace(root.rstrip(os.sep), ".")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates echoed back, as \\ud800
