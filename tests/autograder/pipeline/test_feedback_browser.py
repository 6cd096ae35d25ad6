"""A feedback page opened in headless Chromium with every network request refused: the formulas are typeset by
the output folder's own MathJax, nothing leaves the machine, and the summary reads on a phone."""

from __future__ import annotations

import tempfile

import pytest
from browser import browser_missing, open_chromium
from locations import REPO
from test_feedback_summary import ASSIGNMENT, NAME, NOTEBOOK, make_out

from autograder.pipeline import feedback

pytestmark = pytest.mark.slow  # a browser

SCREENSHOTS = REPO / "build" / "screenshots"  # `make screenshots` copies them into docs/screenshots
LOCAL = ("file:", "data:", "about:")


@pytest.fixture(scope="module")
def page_path(tmp_path_factory):
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    out = make_out(tmp_path_factory.mktemp("graded") / "out")
    feedback.regenerate(out, [("ada", ASSIGNMENT, NOTEBOOK)])
    return out / "feedback" / "ada" / ASSIGNMENT / f"{NAME}.html"


def _open(playwright, profile: str, width: int):
    context = open_chromium(playwright, profile, width, 900, offline=True)
    requests: list[str] = []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL) else route.abort())
    context.on("request", lambda request: requests.append(request.url))
    return context, requests


@pytest.mark.parametrize("width", [1280, 390])
def test_formulas_are_typeset_offline_and_nothing_leaves(page_path, width):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context, requests = _open(playwright, profile, width)
        try:
            page = context.new_page()
            violations: list[str] = []
            page.on("console", lambda message: violations.append(message.text) if "violates" in message.text else None)
            page.goto(page_path.as_uri())
            page.wait_for_function(
                "() => window.MathJax && MathJax.Hub && MathJax.Hub.queue && MathJax.Hub.queue.pending === 0"
                " && document.querySelectorAll('.MathJax, .MathJax_Display').length > 0",
                timeout=30_000,
            )
            rendered = page.evaluate("() => document.querySelectorAll('span.MathJax').length")
            # every $...$ of the page's text typeset: no TeX source left in what a reader sees
            shown = page.evaluate(
                "() => Array.from(document.querySelectorAll('.rendered_html')).map(e => e.innerText).join('\\n')"
            )
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            summary_width = page.evaluate("() => document.getElementById('standing').getBoundingClientRect().right")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"feedback-offline-{width}.png"), full_page=False)
        finally:
            context.close()
    assert rendered >= 3, "the formulas were not typeset"
    assert "$" not in shown and "\\varepsilon" not in shown, shown
    outside = [url for url in requests if not url.startswith(LOCAL)]
    assert not outside, f"requests left the machine: {outside}"
    assert any(url.endswith("MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe") for url in requests)
    # the policy blocks only MathJax's own probe of a font at about:blank
    assert all("about:blank" in text for text in violations), violations
    assert overflow <= 0 and summary_width <= width


def test_the_page_looks_the_same_served_online(page_path):
    """Served by a web server (as a course site or Jupyter would), the policy's 'self' is that server: the same
    local MathJax typesets the page, and it looks exactly as it does from the file."""
    import functools
    import http.server
    import threading

    from browser import free_port
    from PIL import Image, ImageChops
    from playwright.sync_api import sync_playwright

    out = page_path.parents[3]
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{port}/"
    shots = {}
    try:
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
            context, requests = _open(playwright, profile, 1280)
            context.unroute("**/*")
            context.route(
                "**/*",
                lambda route: route.continue_() if route.request.url.startswith((origin, *LOCAL)) else route.abort(),
            )
            context.set_offline(False)
            try:
                for name, url in (
                    ("online", origin + page_path.relative_to(out).as_posix()),
                    ("offline", page_path.as_uri()),
                ):
                    page = context.new_page()
                    page.goto(url)
                    page.wait_for_function(
                        "() => window.MathJax && MathJax.Hub && MathJax.Hub.queue && MathJax.Hub.queue.pending === 0"
                        " && document.querySelectorAll('span.MathJax').length >= 3",
                        timeout=30_000,
                    )
                    page.wait_for_timeout(300)  # web fonts settle
                    shots[name] = SCREENSHOTS / f"feedback-{name}-1280.png"
                    page.screenshot(path=str(shots[name]))
                    page.close()
            finally:
                context.close()
    finally:
        server.shutdown()
        server.server_close()
    assert not [url for url in requests if not url.startswith((origin, *LOCAL))]
    online, offline = (Image.open(shots[name]).convert("RGB") for name in ("online", "offline"))
    assert online.size == offline.size
    assert ImageChops.difference(online, offline).getbbox() is None, "the page looks different online"
