"""The demo page in a real browser: headless Debian Chromium (driven by Playwright, never a downloaded browser)
opens /demo, punctuates a Classical Chinese text in the punctuation tab, reads the answer from the page and
saves a screenshot; then every task of the registry's is run from its own tab on its first example. The page
must make no request outside the server (it works offline).

``TAGSMITH_UPDATE_DEMO_PNG=1`` also copies the screenshot to docs/demo.png (the README's picture)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TEXT = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏"
#: answer shape (the registry's ``answer``) -> the element of a tab that shows the answer (a shape without one here
#: fails the test: a new kind of answer must be shown on the page)
SHOWN = {"segmented": "#{task}-output textarea", "punctuated": "#{task}-output textarea",
         "filled_mask": "#{task}-output textarea", "toxicity": "#{task}-label"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium fonts-wqy-zenhei)"),
]


def test_demo_page_punctuates_classical_chinese(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from tagsmith.tasks import served_tasks

    outside: list[str] = []

    def only_loopback(route):
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900}, locale="zh-CN")
            page.route("**/*", only_loopback)
            page.goto(server.url + "/demo/", wait_until="networkidle", timeout=120_000)
            page.get_by_role("tab", name=re.compile("Punctuation")).click()
            page.locator("#punctuation-input textarea").fill(TEXT)
            page.locator("#punctuation-run").click()
            output = page.locator("#punctuation-output textarea")
            expect(output).to_have_value(re.compile("，"), timeout=60_000)
            punctuated = output.input_value()
            expect(page.locator("#punctuation-highlight")).to_contain_text("宇宙洪荒", timeout=10_000)
            expect(page.get_by_role("button", name=re.compile("^雲騰致雨露結為霜"))).to_be_visible()  # an example
            screenshot = tmp_path / "demo.png"
            page.screenshot(path=str(screenshot), full_page=True)

            # a refused input is a message on the page, not a broken page
            page.locator("#punctuation-input textarea").fill("   ")
            page.locator("#punctuation-run").click()
            expect(page.get_by_text(re.compile("empty text")).first).to_be_visible(timeout=30_000)

            # every served task of the registry has its tab, and answers its first example there
            for task in served_tasks():
                page.get_by_role("tab", name=re.compile(f"^{re.escape(task.title)}$")).click()
                page.locator(f"#{task.name}-input textarea").fill(task.examples[0])
                page.locator(f"#{task.name}-run").click()
                shown = page.locator(SHOWN[task.answer].format(task=task.name))
                if shown.evaluate("element => element.tagName") == "TEXTAREA":
                    expect(shown).not_to_have_value("", timeout=60_000)
                else:  # a label: the most likely class is one of the task's
                    expect(shown).to_contain_text(re.compile("|".join(map(re.escape, task.labels))), timeout=60_000)
        finally:
            browser.close()

    assert punctuated.startswith("天地玄黃，宇宙洪荒。"), punctuated
    assert "".join(c for c in punctuated if c not in "，。：、；？！") == TEXT
    assert screenshot.stat().st_size > 10_000
    assert outside == [], f"the page asked for resources outside the server: {outside}"
    if os.environ.get("TAGSMITH_UPDATE_DEMO_PNG") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / "demo.png")
