"""`cogem report`: the HTML page of a run, on traces made with the fakes (fast, no browser)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from cogem import Reasoner, load_specs, verify_trace
from cogem.audit.report import badge, render_report, write_report
from cogem.cli.report_cmd import run_report_cli
from cogem.errors import OutputValidationError, UsageError
from cogem.testing import ScriptedLLM, fake_runtime
from cogem.trace import read_trace
from cogem.trace.events import ModuleEnd

SCENARIO = "I kept the wallet <script>alert(1)</script> & told \"no one\" 'ever'."
STEP = re.compile(r'<section class="card step[ "]')


def make_trace(path: Path, scenario: str = SCENARIO) -> Path:
    Reasoner.default().run(scenario, fake_runtime(), trace_path=path)
    return path


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes], *, final_newline: bool = True) -> Path:
    path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))
    return path


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return make_trace(tmp_path / "t.jsonl")


def badge_of(html: str) -> str:
    found = re.search(r'<span id="badge" class="badge (ok|bad)"[^>]*>([^<]*)</span>', html)
    assert found, "no badge on the page"
    return found.group(2)


def test_intact_trace_one_section_per_step_in_order(trace: Path) -> None:
    html = render_report(trace)
    ends = [e for e in read_trace(trace) if isinstance(e, ModuleEnd)]
    assert len(STEP.findall(html)) == len(ends) == 4
    modules = re.findall(r'<span class="module-name">([^<]*)</span>', html)
    assert modules == [e.module for e in ends] == ["perceive", "recall", "judge", "plan"]
    assert badge_of(html) == "intact" and 'class="badge ok"' in html
    assert "run_end: ok" in html and "option probabilities" in html and "memory retrieval" in html
    assert 'id="problems"' not in html


def test_trace_content_is_escaped_everywhere(trace: Path) -> None:
    html = render_report(trace)
    assert "<script" not in html.lower()  # the page has no script at all, so any is an injection
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "alert(1)</script>" not in html
    assert "&#34;no one&#34;" in html and "&#39;ever&#39;" in html and "&amp; told" in html


def test_attribute_values_are_escaped(trace: Path) -> None:
    lines = lines_of(trace)
    evil = 'perceive\\" onmouseover=\\"alert(2)'  # JSON-escaped quotes: still one valid record
    lines[1] = lines[1].replace(b'"module":"perceive"', b'"module":"' + evil.encode() + b'"')
    write_lines(trace, lines)
    html = render_report(trace)
    assert 'data-module="perceive&#34; onmouseover=&#34;alert(2)"' in html
    assert 'onmouseover="' not in html


def test_page_is_self_contained(trace: Path) -> None:
    html = render_report(trace)
    assert not re.search(r"https?://|\bsrc=|@import|url\(|<link rel=\"stylesheet\"", html)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


@pytest.mark.parametrize("record", [1, 5, 9, 14])
def test_flipped_byte_badge_names_the_audits_first_bad_record(trace: Path, record: int) -> None:
    lines = lines_of(trace)
    line = bytearray(lines[record])
    pos = line.index(b'"ts":"') + 8  # a digit of the timestamp: still a valid event
    line[pos] = ord("9") if line[pos] != ord("9") else ord("8")
    lines[record] = bytes(line)
    write_lines(trace, lines)
    audit = verify_trace(trace)
    assert audit.first_bad == record
    html = render_report(trace)
    assert badge_of(html) == f"tampered at record {record}" == badge(audit)[0]
    assert 'class="badge bad"' in html and 'id="problems"' in html
    assert "was altered" in html
    assert len(STEP.findall(html)) == 4  # the altered record is still shown, flagged


def test_truncated_trace_is_incomplete_and_still_rendered(trace: Path) -> None:
    write_lines(trace, lines_of(trace)[:9])  # cut after judge's first call: no run_end, no seal
    audit = verify_trace(trace)
    assert not audit.ok and not audit.tampered
    html = render_report(trace)
    assert badge_of(html) == "incomplete" == badge(audit)[0]
    assert len(STEP.findall(html)) == 3  # perceive, recall, and the unfinished judge
    assert 'data-status="unfinished"' in html and "no run_end record" in html


def test_torn_last_line_shows_as_unreadable(trace: Path) -> None:
    lines = lines_of(trace)[:9]
    lines[-1] = lines[-1][: len(lines[-1]) // 2]  # a crash in the middle of writing a record
    write_lines(trace, lines, final_newline=False)
    audit = verify_trace(trace)
    html = render_report(trace)
    assert badge_of(html) == badge(audit)[0] == "incomplete"
    assert "unreadable record 8" in html


def test_garbage_record_is_unreadable_and_tampered(trace: Path) -> None:
    lines = lines_of(trace)
    lines[6] = b"{not json <b>bold</b>"
    write_lines(trace, lines)
    audit = verify_trace(trace)
    html = render_report(trace)
    assert badge_of(html) == f"tampered at record {audit.first_bad}" == "tampered at record 6"
    assert "unreadable record 6" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert len(STEP.findall(html)) == 4


def test_unreadable_run_start_still_renders(trace: Path) -> None:
    lines = lines_of(trace)
    lines[0] = b"\xff\xfe garbage"
    write_lines(trace, lines)
    html = render_report(trace)
    assert badge_of(html) == "tampered at record 0"
    assert "unreadable record 0" in html and "run_start unreadable" in html
    assert len(STEP.findall(html)) == 4


def test_empty_trace(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    html = render_report(path)
    assert badge_of(html) == badge(verify_trace(path))[0]
    assert len(STEP.findall(html)) == 0


def test_failed_run_shows_retries_and_the_error(tmp_path: Path) -> None:
    specs = load_specs()
    reasoner = Reasoner.sequential([specs["perceive"], specs["recall"], specs["judge"]])
    perceive = '{"summary":"s","actors":["me"],"action":"kept <i>it</i>"}'
    bad = '{"reason":"r","cited_ids":["made.up.id"]}'
    llm = ScriptedLLM(
        generations=[perceive, '{"query":"keeping found money"}', bad, bad],
        scores=[[-1.0, -2.0, -3.0]],
    )
    path = tmp_path / "t.jsonl"
    with pytest.raises(OutputValidationError):
        reasoner.run("A scenario.", fake_runtime(llm), trace_path=path)
    html = render_report(path)
    assert badge_of(html) == "intact"
    assert 'class="retry"' in html and "validation retry" in html
    assert "error: OutputValidationError" in html and "run_end: error" in html
    assert 'data-module="judge" data-status="failed"' in html
    assert "kept &lt;i&gt;it&lt;/i&gt;" in html
    assert len(STEP.findall(html)) == 3


def test_option_bars_widths_follow_probabilities(trace: Path) -> None:
    html = render_report(trace)
    rows = re.findall(
        r'<span style="width: ([0-9.]+)%"></span></div></td><td class="num">([0-9.]+)</td>', html
    )
    assert len(rows) == 3
    for width, prob in rows:
        assert abs(float(width) / 100 - float(prob)) < 0.002
    assert html.count('<tr class="chosen">') == 1


def test_write_report_returns_the_audit(trace: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    audit = write_report(trace, out)
    assert audit == verify_trace(trace)
    assert out.read_text(encoding="utf-8") == render_report(trace)


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200), buffer


def test_cli_missing_trace_is_a_usage_error(tmp_path: Path) -> None:
    console, _ = _console()
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UsageError, match=re.escape(str(missing))):
        run_report_cli(missing, out=tmp_path / "r.html", console=console)
    assert not (tmp_path / "r.html").exists()


def test_cli_writes_page_and_prints_badge(trace: Path, tmp_path: Path) -> None:
    console, buffer = _console()
    out = tmp_path / "sub" / "r.html"
    assert run_report_cli(trace, out=out, console=console) == 0
    assert out.is_file()
    assert buffer.getvalue().splitlines() == [f"report: {out}", "audit: intact"]


def test_cli_tampered_trace_still_gets_a_page(trace: Path, tmp_path: Path) -> None:
    lines = lines_of(trace)
    lines[3] = lines[3].replace(b'"latency_ms":', b'"latency_ms":1', 1)
    write_lines(trace, lines)
    console, buffer = _console()
    out = tmp_path / "r.html"
    assert run_report_cli(trace, out=out, console=console) == 0
    assert "audit: tampered at record 3" in buffer.getvalue()
    assert badge_of(out.read_text(encoding="utf-8")) == "tampered at record 3"


def test_cli_output_path_that_is_a_directory(trace: Path, tmp_path: Path) -> None:
    console, _ = _console()
    with pytest.raises(UsageError, match="directory"):
        run_report_cli(trace, out=tmp_path, console=console)


def test_signed_seal_is_checked_with_the_given_key(tmp_path: Path) -> None:
    path = tmp_path / "signed.jsonl"
    Reasoner.default().run(SCENARIO, fake_runtime(audit_key="s3cret"), trace_path=path)
    assert "signature verified" in render_report(path, key=b"s3cret")
    assert "signed (set COGEM_AUDIT_KEY" in render_report(path)
    wrong = verify_trace(path, key=b"other")
    assert badge_of(render_report(path, key=b"other")) == badge(wrong)[0] != "intact"
