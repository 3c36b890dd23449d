"""The reports in a real browser (Debian's chromium driven by Playwright, no browser download).

Why Playwright: one API gives a JavaScript-off context, every request the page makes (so "requests
nothing from the network" is observed, not guessed from the HTML), page-side evaluation of the XSS
globals and screenshots; ``chromium --dump-dom`` would need a hand-written CDP client for the
first two. The browser is the system's (``executable_path``), installed by .ci/run.

Missing chromium: skipped on a developer's machine, a failure under CI=true.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from playwright.sync_api import sync_playwright

from report_fixtures import LONG_PROMPT, XSS
from sdeval.reports import ReportOptions, render

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI", "").strip().lower() in ("true", "1"):
            pytest.fail(f"chromium is missing at {CHROMIUM} (CI=true: .ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                   args=FLAGS, viewport={"width": 1280, "height": 900})
        yield ctx
        ctx.close()


@pytest.fixture(scope="module")
def pages(gate_dir: Path, eval_dir: Path, compare_dir: Path, tmp_path_factory) -> dict[str, Path]:
    out = {}
    for kind, folder in (("gate", gate_dir), ("eval", eval_dir), ("compare", compare_dir)):
        dest = tmp_path_factory.mktemp(kind) / folder.name
        shutil.copytree(folder, dest)
        out[kind] = render(dest, ReportOptions(formats=("html",))).files["html"]
    return out


def open_page(browser, path: Path, js: bool = True):
    """The page with JS on or off and every request it makes recorded (and refused unless it is the page)."""
    requests: list[str] = []
    page = browser.new_page()
    if not js:
        cdp = browser.new_cdp_session(page)
        cdp.send("Emulation.setScriptExecutionDisabled", {"value": True})

    def route(r):
        url = r.request.url
        if url != path.as_uri() and not url.startswith("data:"):
            requests.append(url)
            return r.abort()
        return r.continue_()
    page.route("**/*", route)
    page.on("request", lambda req: None if req.url == path.as_uri() or req.url.startswith("data:")
            else requests.append(req.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, requests


def not_blank(png: bytes) -> bool:
    im = Image.open(io.BytesIO(png)).convert("L")
    lo, hi = im.getextrema()
    return hi - lo > 100 and ImageStat.Stat(im).stddev[0] > 10


KEY = {"gate": ["#verdict", "#counts", "#image-table tbody tr", "#policy", "svg.plot"],
       "eval": ["#verdict", "#set-metric-table", "#image-metric-table", "svg.plot", "#image-table"],
       "compare": ["#verdict", "#arm-table", "#metric-table tbody tr", "figure.forest svg", ".pair img",
                   "#unpaired-table"]}


@pytest.mark.parametrize("kind", ["gate", "eval", "compare"])
def test_report_renders_executes_nothing_and_fetches_nothing(browser, pages, kind, tmp_path: Path):
    page, requests = open_page(browser, pages[kind])
    assert page.locator("th[data-sort]").first.get_attribute("title") == "sort"  # JS on: the script ran
    title = page.title()
    assert title == f"sdeval {kind} report"
    page.mouse.move(400, 400)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    for sel in KEY[kind]:
        assert page.locator(sel).count() > 0, sel
    assert page.evaluate("typeof window.__xss") == "undefined" and page.title() == title
    assert page.evaluate("document.body.offsetHeight") > 500  # no injected CSS hid the body
    # the payloads render as text
    text = page.inner_text("body")
    assert XSS[0] in text or kind == "compare" and "cand</script>" in text
    shot = page.screenshot(full_page=False)
    (tmp_path / f"{kind}.png").write_bytes(shot)
    assert not_blank(shot)
    # sorting (the only script) works and is an enhancement
    if kind == "gate":
        first = page.locator("#image-table tbody tr").first.get_attribute("id")
        page.locator("#image-table th", has_text="#").click()
        page.locator("#image-table th", has_text="#").click()
        assert page.locator("#image-table tbody tr").first.get_attribute("id") != first
    page.close()
    assert requests == []


@pytest.mark.parametrize("kind", ["gate", "compare"])
def test_report_content_is_there_without_javascript(browser, pages, kind):
    page, requests = open_page(browser, pages[kind], js=False)
    # the page's script did not run: it would have titled the sortable headers
    assert page.locator("th[data-sort]").first.get_attribute("title") is None
    rows = page.locator("#image-table tbody tr" if kind == "gate" else "#metric-table tbody tr")
    assert rows.count() > 0
    assert any(word in page.inner_text("#verdict") for word in ("PASSED", "FAILED", "REGRESSION"))
    if kind == "gate":
        assert LONG_PROMPT[:200] in page.inner_text("#image-table")
        # CSS-only filter: the 'block' anchor hides the other rows
        page.goto(pages[kind].as_uri() + "#f-block")
        visible = [r for r in page.locator("#image-table tbody tr").all() if r.is_visible()]
        assert visible and all("r-block" in (r.get_attribute("class") or "") for r in visible)
    page.close()
    assert requests == []


def test_the_network_and_script_checks_can_fail(browser, tmp_path: Path):
    """Negative control: a page that fetches and runs something is caught by the same helpers."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><title>t</title><img src="http://127.0.0.1:9/x.png">'
                   '<script>window.__xss = 1</script><p>x</p>')
    page, requests = open_page(browser, bad)
    assert page.evaluate("window.__xss") == 1
    page.close()
    assert requests and requests[0].startswith("http://127.0.0.1:9/")


def test_human_form_is_blind_takes_keys_and_exports_votes(browser, compare_dir: Path, tmp_path: Path):
    import json

    from sdeval.compare.votes import add_votes

    folder = tmp_path / "compare"
    shutil.copytree(compare_dir, folder)
    files = render(folder, ReportOptions(formats=("html",), human_form=True)).files
    form = files["human"]
    import re

    source = re.sub(r"data:image/webp;base64,[A-Za-z0-9+/=]+", "", form.read_text(encoding="utf-8"))
    arms = [a["name"] for a in json.loads((folder / "compare.json").read_text())["arms"]]
    assert not any(name in source for name in arms)  # blind: no arm name in the page
    key = json.loads((folder / "human" / "pairs.json").read_text())["pairs"]
    assert {p["left"] for p in key} == set(arms)  # sides are drawn at random
    page, requests = open_page(browser, form)
    page.fill("#rater", "ann")
    page.locator("#rater").dispatch_event("change")
    page.locator("body").click(position={"x": 5, "y": 5})
    assert page.inner_text("#progress") == f"0 / {len(key)}"
    for k in ["1", "2", "0"] * (len(key) // 3) + ["1"] * (len(key) % 3):
        page.keyboard.press(k)
    assert page.inner_text("#progress") == f"{len(key)} / {len(key)}" and page.is_visible("#done")
    with page.expect_download() as dl:
        page.click("#download")
    votes = tmp_path / "votes-ann.csv"
    dl.value.save_as(votes)
    page.close()
    assert requests == []
    lines = votes.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "rater,pair_id,choice,seconds,voted_at" and len(lines) == len(key) + 1
    human = add_votes(folder, [votes])
    assert human["votes"] == len(key) and human["raters"] == ["ann"]
    page_html = render(folder, ReportOptions(formats=("html",))).files["html"].read_text(encoding="utf-8")
    assert 'id="human-table"' in page_html
