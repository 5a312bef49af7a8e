"""The interactive API page at /docs, in a real headless browser.

Debian's chromium, driven by Playwright: the page loads from the server alone
(every request it makes stays on the server's origin), lists every route of
/openapi.json, logs no console error, and its "Try it out" on POST /predict
gets a label back from the running server.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("NBSERVE_CHROMIUM", "/usr/bin/chromium")
# As root in a sandbox: no setuid sandbox; and no background networking, whose
# connections this machine's closed network refuses (console noise).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def docs_page(browser, serve, nbserve_bin, models_dir):
    """A server and a browser page on its /docs, with everything the page
    logged or requested recorded."""
    server = serve(nbserve_bin)
    page = browser.new_page()
    seen = {"console": [], "errors": [], "requests": [], "failed": []}
    page.on(
        "console",
        lambda m: seen["console"].append(f"{m.type}: {m.text}")
        if m.type in ("error", "warning")
        else None,
    )
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("requestfailed", lambda r: seen["failed"].append(r.url))
    page.goto(server.url + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    yield server, page, seen
    page.close()


def test_the_page_lists_every_route_and_logs_no_error(docs_page):
    server, page, seen = docs_page
    spec = server.get("/openapi.json").json()
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    shown = set()
    for block in page.query_selector_all(".opblock"):
        method = block.query_selector(".opblock-summary-method").inner_text().strip()
        path = block.query_selector(".opblock-summary-path").get_attribute("data-path")
        shown.add((method.upper(), path))
    assert shown == documented
    assert len(documented) >= 15, documented
    assert seen["console"] == [] and seen["errors"] == [], seen
    assert seen["failed"] == [], seen["failed"]
    # Air-gapped: nothing but this server was asked for anything.
    foreign = [u for u in seen["requests"] if not u.startswith(server.url + "/")]
    assert foreign == [], foreign


def test_try_it_out_on_predict_gets_a_label(docs_page):
    server, page, seen = docs_page
    block = page.locator(".opblock-post", has=page.locator('[data-path="/predict"]'))
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    body = block.locator("textarea.body-param__text")
    body.fill(json.dumps({"text": "WIN a FREE prize now, click here"}))
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "200"
    answer = block.locator(".live-responses-table .microlight").first.inner_text()
    parsed = json.loads(answer)
    assert parsed["label"] in ("ham", "spam")
    assert set(parsed["probabilities"]) == {"ham", "spam"}
    assert seen["console"] == [] and seen["errors"] == [], seen


def test_the_page_can_be_switched_off(serve, nbserve_bin, models_dir):
    server = serve(nbserve_bin, {"SERVER__DOCS_UI": "false"})
    assert server.get("/docs").status == 404
    assert server.get("/docs/swagger-ui-bundle.js").status == 404
    # The description itself stays: clients generate code from it.
    assert server.get("/openapi.json").status == 200


def test_the_page_forbids_inline_and_foreign_scripts(serve, nbserve_bin, models_dir):
    r = serve(nbserve_bin).get("/docs")
    assert r.status == 200
    csp = r.headers["content-security-policy"]
    assert re.search(r"script-src 'self'(;|$)", csp), csp
    assert "default-src 'none'" in csp
