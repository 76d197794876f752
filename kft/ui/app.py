"""Composes the tabs into one gr.Blocks: the title, the language switch, and the three ``Tab``s."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..services import Workspace
from .compare_tab import CompareTab
from .guard import GuardedBlocks
from .runs_tab import RunsTab
from .strings import DEFAULT_LANG, language_choices, language_label, retranslate, tr
from .train_tab import TrainTab

CACHE_RETENTION = (3600, 86400)  # gradio's delete_cache: (every s, files older than s)


def build_app(ws: Workspace, settings: Any = None) -> gr.Blocks:
    lang = getattr(settings, "lang", DEFAULT_LANG)
    # gradio's upload folder: what this app received (or produced) is deleted a day later, checked every hour
    with GuardedBlocks(title="kft", data_dir=ws.data_dir, lang=lang, delete_cache=CACHE_RETENTION,
                       discard=ws.uploads.discard) as demo:
        lang_box = gr.Textbox(value=lang, visible=False)  # the page's language: the last input of every event
        demo.lang_box = lang_box  # a request that leaves it out, or sends no language, gets the server's
        with gr.Row():
            title = gr.Markdown(f"## {tr('common.title', lang)}", elem_id="kft-title", min_width=300)
            lang_radio = gr.Radio(choices=language_choices(), value=lang, label=language_label(lang), scale=0,
                                  min_width=220)
        intro = gr.Markdown(tr("common.intro", lang), elem_id="kft-intro")
        tabs = [TrainTab(ws, settings, lang_box), CompareTab(ws, settings, lang_box), RunsTab(ws, settings, lang_box)]
        with gr.Tabs() as tab_row:
            pages = {}
            for tab in tabs:
                # the runs tab's children (its 5 s tick among them) live while another tab is shown: Gradio mounts an
                # inactive tab's children only on its first visit, so a page loaded earlier kept a stale list
                with gr.Tab(tr(f"common.tab_{tab.id}", lang), id=tab.id, render_children=tab.id == "runs") as page:
                    tab.build(lang)
                pages[tab.id] = page
        tabs[2].connect_compare(tabs[1], tab_row)

        # the notices on screen: their text is the only record of them, so it is re-rendered from itself
        notices = [(tab, tab.notice_box) for tab in tabs if getattr(tab, "notice_box", None) is not None]

        def relabel(new_lang: str, *shown: str) -> dict[Any, Any]:
            updates = {title: gr.update(value=f"## {tr('common.title', new_lang)}"), lang_box: new_lang,
                       intro: gr.update(value=tr("common.intro", new_lang))}
            updates.update({page: gr.update(label=tr(f"common.tab_{key}", new_lang)) for key, page in pages.items()})
            for tab in tabs:
                updates.update(tab.relabel(new_lang))
            for (tab, box), text in zip(notices, shown, strict=True):
                again = retranslate(tab.id, text or "", new_lang)
                updates[box] = gr.skip() if again is None else again
            return updates

        boxes = [box for _, box in notices]
        outputs = {title, intro, lang_box, *pages.values(), *(c for tab in tabs for c in tab.translated), *boxes}
        lang_radio.change(relabel, inputs=[lang_radio, *boxes], outputs=list(outputs), api_visibility="private",
                          show_progress="hidden")
    return demo
