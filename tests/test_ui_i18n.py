"""kft/ui/i18n.py: a message already on screen is re-rendered in the other language (issue 16)."""

from __future__ import annotations

from kft.ui import compare_view, train_strings
from kft.ui.i18n import retranslate, tr


def test_a_notice_on_screen_is_re_rendered_in_the_new_language_with_its_values_kept():
    strings = train_strings.STRINGS
    detail = "row 2: instruction is empty; row 3: not valid JSON"  # a library's English detail stays as it is
    shown = "⚠️ " + tr(strings, "refused", "en", msg=detail)
    ko = retranslate(strings, shown, "ko")
    assert ko == "⚠️ " + tr(strings, "refused", "ko", msg=detail)
    assert retranslate(strings, ko, "en") == shown
    started = tr(strings, "started", "ko", run="20261130-075859")
    assert retranslate(strings, started, "en") == "Training started: 20261130-075859"
    assert retranslate(strings, tr(strings, "nothing_to_stop", "en"), "ko") == tr(strings, "nothing_to_stop", "ko")


def test_text_no_template_writes_is_left_alone():
    assert retranslate(train_strings.STRINGS, "", "ko") is None
    assert retranslate(train_strings.STRINGS, "something a person typed", "ko") is None


def test_no_template_is_only_a_field_so_none_matches_every_text():
    for strings in (train_strings.STRINGS, compare_view.STRINGS):
        for pair in strings.values():
            for template in pair:
                assert template.strip() not in {"{msg}", "{e}", "{run}", "{m}", "{a}"}, template
