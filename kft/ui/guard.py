"""The last line at the UI edge: whatever a request sends, its reply is a result or a kft message.

Every kft refusal has one shape: its text starts with ``REFUSAL`` (``Tab.notice`` and ``Tab.error`` write it).
Gradio's own preprocessing (a choice not offered, a number it cannot read, too few values) and any exception kft did
not expect become such a message here; the traceback goes to the server log, never to the page. The classes of bad
input are still fixed where they enter (kft.config.validation, the form's parser, the file readers): this only catches what
slips past them.
"""

from __future__ import annotations

import errno
import inspect
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.exceptions import Error
from gradio.utils import get_upload_folder, is_in_or_equal

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


INT64 = 2**63  # orjson (gradio's reply encoder) takes integers of 64 bits only
STR_KINDS = (gr.Textbox, gr.Markdown)  # components whose value is text


def field_name(block_fn: Any, index: int, lang: str) -> str:
    """What the page calls input ``index`` of an event: its label, else the handler's parameter name, else its
    number."""
    block = block_fn.inputs[index] if index < len(block_fn.inputs) else None
    label = str(getattr(block, "label", None) or "")
    if len(label) > 40 and " (" in label:  # "Data file (.jsonl, .json, ...; columns: ...)": its name
        label = label.split(" (", 1)[0]
    if label:
        return label[:80]
    try:
        params = [p.name for p in inspect.signature(block_fn.fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if index < len(params) and not params[index].startswith("_"):
        return params[index]
    return tr("guard.input_n", lang, n=index + 1)


def is_file_input(block: Any) -> bool:
    return isinstance(block, (gr.File, gr.UploadButton))


def not_uploaded(value: Any) -> bool:
    """Whether a file input's value is something other than a file uploaded to this server (POST /gradio_api/upload):
    not a file object, a path outside gradio's upload folder (/etc/passwd, a run's files), or one never uploaded."""
    if value is None:
        return False
    if isinstance(value, list):
        return any(not_uploaded(v) for v in value) or not value
    path = value.get("path") if isinstance(value, dict) else None
    if not isinstance(path, str) or not path or "\x00" in path:
        return True
    try:
        return not (is_in_or_equal(path, get_upload_folder()) and os.path.isfile(path))
    except (OSError, ValueError):
        return True


def expects_text(block: Any) -> bool:
    """Whether the component's value is one text (a textbox, a markdown box, a single choice among texts)."""
    if isinstance(block, STR_KINDS):
        return True
    if isinstance(block, (gr.Radio, gr.Dropdown)) and not getattr(block, "multiselect", False):
        choices = [c[1] if isinstance(c, (tuple, list)) else c for c in (block.choices or [])]
        return all(isinstance(c, str) for c in choices)
    return False


def json_safe(value: Any) -> Any:
    """``value`` as gradio can send it: lone surrogates escaped, integers beyond 64 bits as their digits (orjson
    refuses both, and the reply became a server error)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -INT64 <= value < INT64 else str(value) if len(str(value)) < 4000 else None
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(json_safe(v) for v in value)
    if isinstance(value, dict):
        return {json_safe(k) if isinstance(k, str) else k: json_safe(v) for k, v in value.items()}
    return value


def os_words(exc: OSError, lang: str) -> str:
    """An OSError in kft's words, in ``lang``."""
    key = {errno.ENOSPC: "guard.disk_full", errno.EDQUOT: "guard.disk_full", errno.EROFS: "guard.disk_read_only"}
    return tr("guard.os_error", lang, why=tr(key.get(exc.errno, "guard.disk_refused"), lang))


def _failing_block(block_fn: Any, inputs: list[Any], why: str) -> Any:
    """The first input gradio could not take (None if it cannot be told)."""
    pairs = list(zip(block_fn.inputs, inputs, strict=False))
    if "file type" in why.lower():  # said of a file before any value is preprocessed
        return next((b for b, v in pairs if getattr(b, "file_types", None) and v), None)
    for block, value in pairs:
        if is_file_input(block):
            if not_uploaded(value):
                return block
            continue
        try:
            if not getattr(block, "data_model", None):  # files are checked on their way to the cache
                block.preprocess(value)
        except Exception:  # noqa: BLE001 - we only look for the one that fails
            return block
    return None


def _refused_value(block_fn: Any, inputs: list[Any], why: str, lang: str) -> str:
    """What kft says about a value gradio's preprocessing refused (gradio's own words name Python types)."""
    if len(inputs) < len(block_fn.inputs):
        return tr("guard.too_few", lang, got=len(inputs), wanted=len(block_fn.inputs))
    block = _failing_block(block_fn, inputs, why)
    field = field_name(block_fn, block_fn.inputs.index(block), lang) if block is not None else tr("guard.a_value", lang)
    if is_file_input(block) and "file type" not in why.lower():
        return tr("guard.not_uploaded", lang, field=field)
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
        self.lang_box: Any = None  # the page's language component (kft.ui.app sets it): a request's is checked

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False) -> Any:
        inputs = self._with_lang(block_fn, list(inputs))
        lang = _lang(inputs, self.lang)
        for i, (block, value) in enumerate(zip(block_fn.inputs, inputs, strict=False)):
            if is_file_input(block) and not_uploaded(value):  # gradio takes a path in its folder never uploaded
                logger.info("request to %s refused: a file input that is not an upload", block_fn.api_name)
                raise Error(refusal(tr("guard.not_uploaded", lang, field=field_name(block_fn, i, lang))),
                            print_exception=False)
        try:
            processed = await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except Exception as exc:  # noqa: BLE001 - gradio's own checks of what a request sent
            logger.info("request to %s refused before it ran: %s", block_fn.api_name, str(exc)[:300])
            self._discard_files(inputs)
            try:
                text = _refused_value(block_fn, inputs, str(exc), lang)
            except Exception:  # noqa: BLE001 - naming the field must never be what fails
                logger.exception("could not name the refused value of %s", block_fn.api_name)
                text = tr("guard.bad_value", lang, field=tr("guard.a_value", lang))
            raise Error(refusal(text), print_exception=False) from exc
        if isinstance(processed, list):  # a text field sent a number, a list...: refused naming it
            for i, (block, value) in enumerate(zip(block_fn.inputs, processed, strict=False)):
                if value is not None and not isinstance(value, str) and expects_text(block):
                    raise Error(refusal(tr("guard.not_text", lang, field=field_name(block_fn, i, lang))),
                                print_exception=False)
        return processed

    def _with_lang(self, block_fn: Any, inputs: list[Any]) -> list[Any]:
        """The inputs with the page's language (the last input of every kft event) set to the server's when the
        request left it out or sent one that is not a language."""
        if self.lang_box is None or not block_fn.inputs or block_fn.inputs[-1] is not self.lang_box:
            return inputs
        if len(inputs) == len(block_fn.inputs) - 1:
            return [*inputs, self.lang]
        if len(inputs) >= len(block_fn.inputs) and not (isinstance(inputs[len(block_fn.inputs) - 1], str)
                                                        and inputs[len(block_fn.inputs) - 1] in LANGS):
            inputs[len(block_fn.inputs) - 1] = self.lang
        return inputs

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
        except OSError as exc:  # a full disk: kft's words, not "[Errno 28] ..."
            logger.warning("%s could not complete: %s", block_fn.api_name or block_fn.name, exc)
            inputs = processed_input if isinstance(processed_input, list) else []
            raise Error(refusal(os_words(exc, _lang(inputs, self.lang))), print_exception=False) from exc
        except Exception as exc:  # noqa: BLE001 - the last resort: log it, answer in kft's words
            raise _unexpected(block_fn, processed_input if isinstance(processed_input, list) else [],
                              self.lang) from exc

    async def postprocess_data(self, block_fn: Any, predictions: Any, state: Any) -> Any:
        try:
            return json_safe(await super().postprocess_data(block_fn, predictions, state))
        except Error:
            raise
        except OSError as exc:  # an output file gradio could not copy to its cache (a full disk)
            logger.warning("an output of %s could not be sent: %s", block_fn.api_name or block_fn.name, exc)
            raise Error(refusal(os_words(exc, self.lang)), print_exception=False) from exc
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
