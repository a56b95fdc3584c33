"""`cogem report` pages in a real headless Chromium: they load cleanly, show every step, agree
with `cogem audit`, and never run trace content as code.

Needs Debian's chromium (`apt-get install -y chromium`) and the playwright Python package; never
`playwright install` (it downloads a browser). Skipped locally without chromium; in CI (``CI`` set)
a missing browser fails the run instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cogem import Reasoner
from cogem.audit.report import write_report
from cogem.testing import fake_runtime
from cogem.trace import read_trace
from cogem.trace.events import ModuleEnd

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCENARIO = (
    "I kept the wallet. <script>window.__pwned = 1</script>"
    '<img src=x onerror="window.__pwned = 2"> "quoted" & done'
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if os.environ.get("CI"):
        import playwright.sync_api as sync_api  # in CI a missing package must fail, not skip
    else:
        sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


class Page:
    """A loaded report page plus everything the browser complained about while loading it."""

    def __init__(self, browser: Any, html_path: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page()
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(html_path.resolve().as_uri(), wait_until="load")


def make_trace(path: Path) -> Path:
    Reasoner.default().run(SCENARIO, fake_runtime(), trace_path=path)
    return path


def audit_json(trace: Path) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "cogem", "audit", "--json", str(trace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def expected_badge(audit: dict[str, Any]) -> str:
    if audit["ok"]:
        return "intact"
    if not audit["tampered"]:
        return "incomplete"
    return f"tampered at record {audit['first_bad']}"


def open_report(browser: Any, trace: Path) -> Page:
    html = trace.with_suffix(".html")
    write_report(trace, html)
    return Page(browser, html)


def check_clean(page: Page) -> None:
    assert page.errors == []
    assert all(url.startswith("file://") for url in page.requests), page.requests
    assert len(page.requests) == 1  # the page itself: no images, fonts, styles or favicons


def badge_rgb(p: Any) -> tuple[int, int]:
    color: str = p.eval_on_selector("#badge", "e => getComputedStyle(e).color")  # "rgb(r, g, b)"
    r, g = (int(x) for x in color[color.index("(") + 1 : -1].split(",")[:2])
    return r, g


def test_intact_report(browser: Any, tmp_path: Path) -> None:
    trace = make_trace(tmp_path / "intact.jsonl")
    page = open_report(browser, trace)
    check_clean(page)
    p = page.page

    steps = p.locator("section.step")
    ends = [e for e in read_trace(trace) if isinstance(e, ModuleEnd)]
    assert steps.count() == len(ends) == 4
    for i, end in enumerate(ends):
        section = steps.nth(i)
        section.scroll_into_view_if_needed()
        assert section.is_visible()
        assert section.locator(".module-name").inner_text() == end.module

    audit = audit_json(trace)
    assert audit["ok"] is True
    assert p.locator("#badge").inner_text() == expected_badge(audit) == "intact"
    r, g = badge_rgb(p)
    assert g > r  # green

    # The scenario's markup is shown as text and never ran.
    assert p.evaluate("typeof window.__pwned") == "undefined"
    assert p.locator("#scenario").inner_text() == SCENARIO
    assert p.locator("script").count() == 0 and p.locator("img").count() == 0

    # Option bars are drawn, with widths following the probabilities.
    rows = p.locator("table.probs tr")
    assert rows.count() == 3
    for i in range(3):
        row = rows.nth(i)
        prob = float(row.locator("td.num").first.inner_text())
        bar = row.locator(".bar").bounding_box()
        fill = row.locator(".bar > span").bounding_box()
        assert bar and fill and fill["height"] > 0
        assert abs(fill["width"] / bar["width"] - prob) < 0.01

    # Prompts are collapsed until asked for.
    prompt = p.locator("details.prompt").first
    assert not prompt.locator("pre").is_visible()
    prompt.locator("summary").click()
    assert prompt.locator("pre").is_visible()
    assert page.errors == []


def test_tampered_report_agrees_with_cogem_audit(browser: Any, tmp_path: Path) -> None:
    trace = make_trace(tmp_path / "tampered.jsonl")
    lines = trace.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b'"attempt":1', b'"attempt":2', 1)  # still a valid event
    trace.write_bytes(b"\n".join(lines))
    audit = audit_json(trace)
    assert audit["ok"] is False and audit["first_bad"] == 5

    page = open_report(browser, trace)
    check_clean(page)
    p = page.page
    assert p.locator("#badge").inner_text() == expected_badge(audit) == "tampered at record 5"
    r, g = badge_rgb(p)
    assert r > g  # red
    assert p.locator("#problems li").count() == len(audit["problems"])
    assert p.locator("section.step").count() == 4
    assert p.locator("section.step.flagged").count() == 1
    assert p.evaluate("typeof window.__pwned") == "undefined"


def test_truncated_report_agrees_with_cogem_audit(browser: Any, tmp_path: Path) -> None:
    trace = make_trace(tmp_path / "cut.jsonl")
    lines = trace.read_bytes().split(b"\n")
    trace.write_bytes(b"\n".join(lines[:10]) + b"\n" + lines[10][:40])  # torn mid-record
    audit = audit_json(trace)
    page = open_report(browser, trace)
    check_clean(page)
    p = page.page
    assert p.locator("#badge").inner_text() == expected_badge(audit) == "incomplete"
    assert p.get_by_text("unreadable record 10").count() == 1
    assert p.locator("section.step").count() == 3
    assert p.locator("#run-status").inner_text() == "no run_end record"


def test_screenshot(browser: Any, tmp_path: Path) -> None:
    """A full-page screenshot renders (kept in tmp_path for a human to look at when debugging)."""
    page = open_report(browser, make_trace(tmp_path / "shot.jsonl"))
    shot = tmp_path / "report.png"
    page.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
