"""The explorer end to end in a real headless Chromium (Debian's ``chromium``, driven by Playwright): a small
Fashion-MNIST run with planted flips; open each view, relabel two suspects and remove one, retrain from the app,
and see the compare view report the changed run.

Set ``EXPLORER_SCREENSHOTS=docs/screenshots`` to write the README's screenshots of each view there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from responsibility.curation import APPLIED_FILE_NAME, FILE_NAME
from responsibility.store import ResponsibilityStore

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the test extra has it)")

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; or set CHROMIUM=...)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path):
    target = os.environ.get("EXPLORER_SCREENSHOTS")
    directory = (ROOT / target) if target else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def serve(run_dir):
    from responsibility.explorer import explore

    return explore(run_dir, port=0, block=False, open_browser=False)


def open_page(browser, server, errors):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.set_default_timeout(120_000)
    page.goto(server.url)
    return page


def shoot(page, path, full_page=False):
    """Screenshot once every thumbnail on the page has arrived."""
    for image in page.locator("img.thumb").all():
        sync_api.expect(image).not_to_have_js_property("naturalWidth", 0)
    page.screenshot(path=str(path), full_page=full_page)


def act(page, action, changes):
    """Press an action button and wait until the curation holds ``changes`` changes (the header's count)."""
    page.click(f".actions button.act-{action}")
    sync_api.expect(page.locator("#changes-badge")).to_have_text(str(changes))
    page.wait_for_selector("main .view")  # the view, rendered again


def test_explore_curate_retrain_compare(browser, fashion_run, tmp_path, shots):
    run_dir = tmp_path / "run"
    shutil.copytree(fashion_run, run_dir)
    server = serve(run_dir)
    errors: list[str] = []
    try:
        page = open_page(browser, server, errors)
        run = server.explorer.run(0)
        # Suspects: the ranking, its detection curve, thumbnails; relabel two flipped suspects to their true class.
        page.wait_for_selector("table.suspects tbody tr")
        assert page.locator("table.suspects tbody tr").count() == 50
        assert page.locator(".detection svg polyline").count() == 4  # one curve per score
        for k in range(10):  # the thumbnails arrived and decoded (28 x 28 pixels)
            sync_api.expect(page.locator("img.thumb").nth(k)).to_have_js_property("naturalWidth", 28)
        shoot(page, shots / "suspects.png")
        page.goto(server.url.split("?")[0] + "#/suspects?only=flipped")
        page.wait_for_selector("table.suspects tbody tr.flipped")
        ids = [
            int(v)
            for v in page.locator("table.suspects tbody tr").evaluate_all(
                "rows => rows.slice(0, 2).map(r => r.dataset.id)"
            )
        ]
        for n, i in enumerate(ids, start=1):
            page.check(f"tr[data-id='{i}'] input[type=checkbox]")
            page.select_option(".actions select[name=label]", str(int(run.clean_labels[i])))
            page.fill(".actions input[name=reason]", "the picture shows another class")
            act(page, "relabel", n)
        page.goto(server.url.split("?")[0] + "#/suspects")
        page.wait_for_selector("table.suspects tbody tr")
        removed = int(page.locator("table.suspects tbody tr:not(.flipped)").first.get_attribute("data-id"))
        page.check(f"tr[data-id='{removed}'] input[type=checkbox]")
        act(page, "remove", 3)

        # What the app saved, read independently of the library: a JSON log with the three changes.
        doc = json.loads((run_dir / FILE_NAME).read_text())
        assert [(c["action"], c["ids"]) for c in doc["changes"]] == [
            ("relabel", [ids[0]]),
            ("relabel", [ids[1]]),
            ("remove", [removed]),
        ]
        assert [c["label"] for c in doc["changes"][:2]] == [int(run.clean_labels[i]) for i in ids]
        assert doc["changes"][0]["reason"] == "the picture shows another class"

        # Test inputs: the (true, predicted) table, an error, and its supporting and opposing examples.
        page.goto(server.url.split("?")[0] + "#/tests?errors=1")
        page.wait_for_selector(".test-card")
        page.locator(".test-card").first.click()
        page.wait_for_selector(".explanation .card")
        assert page.locator("table.confusion td.cell").count() == 100
        assert page.locator(".explanation").count() == 2
        shoot(page, shots / "tests.png")

        page.goto(server.url.split("?")[0] + "#/classes")
        page.wait_for_selector(".class-row .card")
        assert page.locator("table.classes-matrix td.cell").count() == 100
        shoot(page, shots / "classes.png")

        page.goto(server.url.split("?")[0] + f"#/example/{ids[0]}")
        page.wait_for_selector(".example-head")
        assert (
            "→ " + run.class_names[int(run.clean_labels[ids[0]])]
            in page.locator(".example-head .badge.relabel").inner_text()
        )
        assert page.locator("svg.chart rect").count() > 2  # the per-epoch bars
        shoot(page, shots / "example.png")

        # Curation: the three changes; retrain in the background, watch it finish, compare.
        page.goto(server.url.split("?")[0] + "#/curation")
        page.wait_for_selector("table.changes tbody tr")
        assert page.locator("table.changes tbody tr").count() == 3
        page.click("button.retrain")
        page.wait_for_selector(".job-panel")
        shoot(page, shots / "curation.png")
        page.wait_for_selector(".job-panel.done button.go-compare", timeout=300_000)
        page.click("button.go-compare")
        page.wait_for_selector("table.curated tbody tr")
        assert page.locator(".headline .stat").count() == 3
        assert page.locator("table.curated tbody tr").count() == 3
        assert "removed" in page.locator(f"table.curated tbody tr:has-text('#{removed}')").inner_text()
        shoot(page, shots / "compare.png", full_page=True)
        assert errors == []
    finally:
        server.stop()

    # The retrained run, read independently: same ids, the relabels in its store, the removed example never seen.
    new = run_dir.parent / "run-curated-1"
    assert json.loads((new / APPLIED_FILE_NAME).read_text())["changes"] == doc["changes"]
    store = ResponsibilityStore.open(new / "responsibility.zarr")
    original = ResponsibilityStore.open(run_dir / "responsibility.zarr")
    expected = original.labels.copy()
    expected[ids] = run.clean_labels[ids]
    assert store.num_examples == original.num_examples and np.array_equal(store.labels, expected)
    seen = store.membership()[0]
    assert removed not in seen and set(np.unique(seen)) == set(range(store.num_examples)) - {removed}


def test_markup_in_class_names_and_notes_renders_as_text(browser, fashion_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(fashion_run, run_dir)
    server = serve(run_dir)
    errors: list[str] = []
    try:
        run = server.explorer.run(0)
        evil = '<img src=x onerror="window.pwned=1">'
        run.datamodule.class_names = [f"{evil}{name}" for name in run.datamodule.class_names]
        page = open_page(browser, server, errors)
        page.goto(server.url.split("?")[0] + "#/example/3")
        page.wait_for_selector(".example-head")
        page.fill(".actions input[name=note]", "<b>bold</b><script>window.pwned=2</script>")
        act(page, "note", 1)
        page.wait_for_selector(".example-head blockquote.note")
        assert (
            page.locator(".example-head blockquote.note").inner_text() == "<b>bold</b><script>window.pwned=2</script>"
        )
        assert evil in page.locator(".example-head").inner_text()
        for view in ("suspects", "classes", "tests?errors=1", "curation"):
            page.goto(server.url.split("?")[0] + f"#/{view}")
            page.wait_for_timeout(500)
            page.wait_for_selector("main .view")
        assert page.evaluate("window.pwned") is None
        assert page.locator("img[src='x'], main script, main b:text-is('bold')").count() == 0
    finally:
        server.stop()
