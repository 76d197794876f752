"""The one tab shape: ``build(lang)`` lays out and wires a tab, ``relabel(lang)`` updates its translatable components.
The language is a hidden app component (``self.lang_box``), the last input of every event (so the API's last
parameter). Refusals reach the user through ``notice()`` (toast + notice) or, for streams and files, ``error()``; both start with
``guard.REFUSAL`` (⚠️) and show no server path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from ..services import Workspace
from .guard import refusal, scrub_paths
from .strings import tr


class Tab:
    id: str = ""
    """The tab's id, and the section of kft.ui.strings its texts are in ("train": the keys "train.*")."""

    def __init__(self, ws: Workspace, settings: Any, lang_box: gr.Textbox) -> None:
        self.ws, self.settings, self.lang_box = ws, settings, lang_box
        self._relabels: list[tuple[Any, Callable[[str], Any]]] = []

    def label(self, comp: Any, key: str, attr: str = "label") -> Any:
        """Register a component whose ``attr`` is the text ``key`` (kft.ui.strings) in the current language."""
        return self.relabel_with(comp, lambda lang: gr.update(**{attr: tr(key, lang)}))

    def label_plot(self, comp: Any, key: str, legend: str = "plot.legend_series") -> Any:
        """Register a chart whose label and legend title (``color_title``) are texts ``key`` and ``legend``."""
        return self.relabel_with(comp, lambda lang: gr.update(label=tr(key, lang), color_title=tr(legend, lang)))

    def relabel_with(self, comp: Any, update: Callable[[str], Any]) -> Any:
        """Register a component with its own relabel function (choices, several attributes)."""
        self._relabels.append((comp, update))
        return comp

    @property
    def translated(self) -> list[Any]:
        """The components ``relabel`` updates."""
        return [comp for comp, _ in self._relabels]

    def relabel(self, lang: str) -> dict[Any, Any]:
        return {comp: update(lang) for comp, update in self._relabels}

    def build(self, lang: str) -> None:
        raise NotImplementedError

    @staticmethod
    def unchanged(components: list[Any]) -> dict[Any, Any]:
        """An update that changes none of ``components`` (Gradio wants every output named)."""
        return {comp: gr.skip() for comp in components}

    def for_page(self, text: str) -> str:
        """``text`` as the page may show it: server paths as names relative to the data directory."""
        return scrub_paths(text, self.ws.data_dir)

    def notice(self, message: str) -> str:
        """A refusal as a toast and as the text of the tab's notice area (returned), in kft's one refusal shape."""
        message = self.for_page(message)
        gr.Warning(message)
        return refusal(message)

    def error(self, message: str, lang: str | None = None) -> gr.Error:
        """A refusal that ends the event (a stream, a file output): raise what this returns. Its toast is titled in
        plain words ("Refused" in the page's language), not Gradio's "Error"."""
        return gr.Error(refusal(self.for_page(message)), print_exception=False, title=tr("common.refused", lang or "ko"))
