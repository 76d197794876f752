"""Composes the tabs into one gr.Blocks. Each tab module exposes ``build(ws, lang) -> TabHandle``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from ..workspace import Workspace
from .i18n import COMMON, DEFAULT_LANG, tr


@dataclass
class TabHandle:
    """What a tab gives back: components whose labels follow the language, and how to relabel them."""

    components: list[Any] = field(default_factory=list)
    relabel: Callable[[str], list[Any]] = lambda lang: []  # noqa: E731
    named: dict[str, Any] = field(default_factory=dict)
    """Components another tab wires to (e.g. the comparison tab's adapter picker)."""


def build_app(ws: Workspace, settings: Any = None) -> gr.Blocks:
    lang = getattr(settings, "lang", DEFAULT_LANG)
    from . import compare_tab, runs_tab, train_tab

    with gr.Blocks(title="kft") as demo:
        with gr.Row():
            title = gr.Markdown(f"## {tr(COMMON, 'title', lang)}")
            lang_radio = gr.Radio(choices=[("한국어", "ko"), ("English", "en")], value=lang,
                                  label=tr(COMMON, "lang", lang), scale=0, min_width=220)
        handles: list[TabHandle] = []
        with gr.Tabs() as tabs:
            with gr.Tab(tr(COMMON, "tab_train", lang), id="train") as t1:
                handles.append(train_tab.build(ws, lang, settings))
            with gr.Tab(tr(COMMON, "tab_compare", lang), id="compare") as t2:
                handles.append(compare_tab.build(ws, lang, settings))
            with gr.Tab(tr(COMMON, "tab_runs", lang), id="runs") as t3:
                handles.append(runs_tab.build(ws, lang, settings))
        runs_tab.connect_compare(ws, handles[2], handles[1], tabs)

        outputs = [title, t1, t2, t3] + [c for h in handles for c in h.components]

        def relabel(new_lang: str) -> list[Any]:
            updates = [gr.update(value=f"## {tr(COMMON, 'title', new_lang)}"),
                       gr.update(label=tr(COMMON, "tab_train", new_lang)),
                       gr.update(label=tr(COMMON, "tab_compare", new_lang)),
                       gr.update(label=tr(COMMON, "tab_runs", new_lang))]
            for h in handles:
                updates.extend(h.relabel(new_lang))
            return updates

        lang_radio.change(relabel, inputs=lang_radio, outputs=outputs, api_visibility="private")
    return demo
