"""Composes the tabs into one gr.Blocks: the title, the language switch, and the three ``Tab``s."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..services import Workspace
from .compare_tab import CompareTab
from .guard import GuardedBlocks
from .i18n import COMMON, DEFAULT_LANG, tr
from .runs_tab import RunsTab
from .train_tab import TrainTab


def build_app(ws: Workspace, settings: Any = None) -> gr.Blocks:
    lang = getattr(settings, "lang", DEFAULT_LANG)
    with GuardedBlocks(title="kft", data_dir=ws.data_dir) as demo:
        lang_box = gr.Textbox(value=lang, visible=False)  # the page's language: the last input of every event
        with gr.Row():
            title = gr.Markdown(f"## {tr(COMMON, 'title', lang)}")
            lang_radio = gr.Radio(choices=[("한국어", "ko"), ("English", "en")], value=lang,
                                  label=tr(COMMON, "lang", lang), scale=0, min_width=220)
        tabs = [TrainTab(ws, settings, lang_box), CompareTab(ws, settings, lang_box), RunsTab(ws, settings, lang_box)]
        with gr.Tabs() as tab_row:
            pages = {}
            for tab in tabs:
                with gr.Tab(tr(COMMON, f"tab_{tab.id}", lang), id=tab.id) as page:
                    tab.build(lang)
                pages[tab.id] = page
        tabs[2].connect_compare(tabs[1], tab_row)

        def relabel(new_lang: str) -> dict[Any, Any]:
            updates = {title: gr.update(value=f"## {tr(COMMON, 'title', new_lang)}"), lang_box: new_lang}
            updates.update({page: gr.update(label=tr(COMMON, f"tab_{key}", new_lang)) for key, page in pages.items()})
            for tab in tabs:
                updates.update(tab.relabel(new_lang))
            return updates

        outputs = {title, lang_box, *pages.values(), *(c for tab in tabs for c in tab.translated)}
        lang_radio.change(relabel, inputs=lang_radio, outputs=list(outputs), api_visibility="private")
    return demo
