"""Start `marimo run` on loopback and drive it in headless Chromium (Debian's package, via Playwright)."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def browser_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def marimo_server(app: str, *flags: str, env: dict | None = None):
    """`marimo run app --headless --no-token` on a free port (extra environment `env`); yields its URL."""
    port = free_port()
    # The server's output goes to a file: a pipe nobody reads would block the server once 64 KiB are written.
    # MARIMO_TEST_LOG=path keeps it for a look after a failure.
    log = (
        open(os.environ["MARIMO_TEST_LOG"], "wb")
        if os.environ.get("MARIMO_TEST_LOG")
        else tempfile.TemporaryFile()
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marimo",
            "-q",
            "run",
            app,
            "--headless",
            "--no-token",
            "-p",
            str(port),
            *flags,
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        else:
            log.seek(0)
            raise RuntimeError(f"marimo did not start: {log.read()[-4000:].decode(errors='replace')}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot_all(page, name: str, parts: int = 4) -> list[Path]:
    """Screenshots of the page scrolled top to bottom (marimo scrolls an inner container)."""
    SHOTS.mkdir(exist_ok=True)
    paths = []
    page.mouse.move(600, 500)
    page.mouse.wheel(0, -100_000)
    page.wait_for_timeout(400)
    for i in range(parts):
        path = SHOTS / f"{name}_{i}.png"
        page.screenshot(path=str(path))
        paths.append(path)
        page.mouse.wheel(0, page.viewport_size["height"] - 100)
        page.wait_for_timeout(600)
    return paths


def server_paths_shown(page) -> list[str]:
    """Snippets of the notebook's own output that name a server path (the project folder, the temp folder).

    Read from the cells' outputs (collapsed accordions included), not from the whole document: marimo itself
    writes the notebook's absolute path into every page it serves (a hidden <marimo-filename> element and the
    mount config: "filename", "cwd"), which this project cannot change — README says so.
    """
    text = page.evaluate(_OUTPUT_TEXT_JS)
    assert len(text) > 1_000, "the cells' outputs were not found: the check would pass on an empty page"
    roots = {str(ROOT), os.path.realpath(tempfile.gettempdir()), tempfile.gettempdir(), "/tmp/"}
    return [
        text[max(0, m.start() - 80) : m.start() + 120] for r in roots for m in re.finditer(re.escape(r), text)
    ]


def cell_text(element) -> str:
    """All the text of the cell that holds `element` (a Locator), read through shadow roots: tables and other
    UI elements draw into those, so `innerText` misses their values (a re-run with new timings looks unchanged)."""
    return element.evaluate(_CELL_TEXT_JS)


# Text through the shadow roots marimo's UI elements (accordions, tables, …) draw into.
_WALK_JS = """
  const parts = [];
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) { parts.push(node.textContent); return; }
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) walk(child);
  };"""
# The text of the cell holding an element; every cell output's text.
_CELL_TEXT_JS = (
    "(element) => {"
    + _WALK_JS
    + " walk(element.closest('.marimo-cell') || element); return parts.join(' '); }"
)
_OUTPUT_TEXT_JS = (
    "() => {"
    + _WALK_JS
    + " document.querySelectorAll('.output-area').forEach(walk); return parts.join(' '); }"
)
