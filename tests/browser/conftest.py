"""Browser-test fixtures: the app as a subprocess on a free localhost port, and headless Debian Chromium.

The app runs the way a user starts it (``python app.py --default-model tiny --lang en``), with a fresh
data directory, so a page reload in the browser is a real reload against a separate server process.
Chromium is Debian's ``/usr/bin/chromium`` (``KFT_CHROMIUM`` overrides it): Playwright's own browser
downloads are not used. Without Chromium or the playwright package every browser test skips.
Screenshots (and the app's log) go to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = os.environ.get("KFT_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling Google services, which floods a closed network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}
APP_START_S = 180

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.is_file() else ""


def _start_app(data_dir: Path, log_path: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py`` (and ``extra`` arguments) on a free port; retry on another port if that one was taken
    meanwhile."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    for _ in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}/"
        cmd = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
               "--default-model", "tiny", "--lang", "en", *extra]
        with log_path.open("ab") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        # up, or ended (a port taken meanwhile is retried below; anything else is reported)
        wait_until(lambda proc=proc, url=url: proc.poll() is not None or _up(url), APP_START_S,
                   what=f"the app on {url}", every=0.5)
        if proc.poll() is None and _up(url):
            return proc, url
        _stop(proc)
        if "address already in use" not in _tail(log_path).lower():
            break
    raise RuntimeError(f"the app did not come up on {url}; last lines of {log_path}:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def serve_app(tmp_path_factory, log_name: str = "browser-app.log", extra: tuple[str, ...] = ()) -> Iterator[str]:
    """URL of a fresh app process (tiny model, bundled sample, its own data dir, ``extra`` arguments), stopped after;
    skips without playwright or Chromium."""
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set KFT_CHROMIUM)")
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / log_name
    log_path.write_bytes(b"")
    proc, url = _start_app(tmp_path_factory.mktemp("kft-browser-data"), log_path, extra)
    try:
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    """URL of a fresh app process (tiny model, bundled sample, its own data dir)."""
    yield from serve_app(tmp_path_factory)


@pytest.fixture(scope="module")
def browser_context(app_url):
    """One headless Chromium with a fresh user data dir, shared by the module's tests."""
    profile = tempfile.mkdtemp(prefix="kft-chromium-")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, viewport=VIEWPORT,
            accept_downloads=True, locale="en-US")
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.kft_failed = report.failed
    return report


@pytest.fixture()
def page(browser_context, request):
    """A new tab; on failure its last state is saved in test-artifacts/ (``FAILED-<test>`` .png and .html)."""
    pg = browser_context.new_page()
    pg.set_default_timeout(60_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    if getattr(request.node, "kft_failed", False):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SCREENSHOTS / f"FAILED-{request.node.name}.png"), full_page=True)
        (ARTIFACTS / f"FAILED-{request.node.name}.html").write_text(pg.content())
        if errors:
            (ARTIFACTS / f"FAILED-{request.node.name}-page-errors.txt").write_text("\n".join(errors))
    pg.close()


@pytest.fixture()
def shoot(page):
    """shoot(name) saves a full-page screenshot as test-artifacts/screenshots/<name>.png; with ``region``
    (first, last locator) also <name>-region.png: the full width from the top of the first element to
    the bottom of the last (the README's pictures)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def _shoot(name: str, region=None) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if region is not None:
            scroll_y = page.evaluate("() => window.scrollY")
            top = region[0].bounding_box()["y"] + scroll_y - 8
            last = region[1].bounding_box()
            bottom = last["y"] + last["height"] + scroll_y + 8
            page.screenshot(path=str(SCREENSHOTS / f"{name}-region.png"), full_page=True,
                            clip={"x": 0, "y": max(top, 0), "width": page.viewport_size["width"],
                                  "height": bottom - max(top, 0)})
        return path

    return _shoot
