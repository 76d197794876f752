"""Issue 23, item 6: behind ``--auth`` the page still works with kft's route table (kft.ui.routes) in front of Gradio.

One app process started with ``--auth``; Chromium logs in through Gradio's login page, opens the train tab, lets the
page's own requests run (the login, assets, heartbeat, the queue, the 2 s status tick) and uploads a file. No
request the page makes may be answered 401 or 404 (a route the table closed or gated by mistake).
"""

from __future__ import annotations

import pytest

from kft.ui.strings import tr

from .conftest import serve_app

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

USER, PASSWORD = "kft", "pw-Browser-Auth-1"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """This module's app: as conftest's, with ``--auth``."""
    yield from serve_app(tmp_path_factory, "browser-app-auth.log", ("--auth", f"{USER}:{PASSWORD}"))


def test_the_page_works_behind_auth_with_the_route_table(page, app_url, tmp_path):
    refused: list[tuple[int, str, str]] = []
    seen: list[str] = []

    def watch(response) -> None:
        path = response.url.removeprefix(app_url.rstrip("/"))
        if response.url.startswith(app_url.rstrip("/")):
            seen.append(path.split("?")[0])
            if response.status in (401, 404):
                refused.append((response.status, response.request.method, path))

    page.on("response", watch)
    page.goto(app_url)
    page.get_by_label("username").fill(USER)
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name=tr("common.tab_train", "en")).click()
    page.wait_for_selector("#kft-status")

    upload = tmp_path / "two-rows.jsonl"
    upload.write_text('{"instruction": "안녕", "output": "안녕하세요"}\n{"instruction": "고마워", "output": "천만에요"}\n',
                      encoding="utf-8")
    page.locator("#kft-data-kind").get_by_label(tr("train.kind_upload", "en")).check()
    page.locator("#kft-upload input[type=file]").set_input_files(str(upload))
    page.locator("#kft-upload").get_by_text(upload.name).wait_for()
    page.wait_for_timeout(5_000)  # the 2 s status tick and the heartbeat run a few times

    assert not refused, refused
    for needed in ("/login", "/gradio_api/queue/join", "/gradio_api/queue/data", "/gradio_api/upload",
                   "/gradio_api/heartbeat/"):  # the config comes inlined in the page
        assert any(p.startswith(needed) for p in seen), (needed, sorted({p for p in seen if "/assets/" not in p}))
