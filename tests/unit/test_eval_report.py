"""The eval report: tables, plots, escaping of user text, and runs that are still going."""

from __future__ import annotations

import xml.dom.minidom
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cogem.errors import InputError
from cogem.evals.records import SampleRecord
from cogem.evals.report import write_report
from tests.eval_samples import manifest, sample, write_eval_dir

PAYLOAD = "<script>alert(1)</script>"
OPTIONS = [f"fine {PAYLOAD}", "wrong | bad"]
PROBES = [
    {
        "probe": f"negate{PAYLOAD}",
        "description": "flip the verdict",
        "n": 10,
        "flips": 3,
        "flip_rate": 0.3,
        "mean_tvd": 0.12,
        "max_tvd": 0.4,
        "errors": 0,
    },
]


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def samples() -> list[SampleRecord]:
    # justice/test: 4 items, 3 right; virtue/test: 4 items, 2 right, 1 errored (not wrong).
    out = []
    for i, (t, p) in enumerate([(0, 0), (1, 1), (0, 0), (1, 0)]):
        out.append(
            sample(
                f"j{i}",
                t,
                probs=[0.9, 0.1] if p == 0 else [0.2, 0.8],
                subset="justice",
                split="test",
                options=OPTIONS,
            )
        )
    for i, (t, p) in enumerate([(0, 0), (1, 1), (0, 1)]):
        out.append(
            sample(
                f"v{i}",
                t,
                probs=[0.6, 0.4] if p == 0 else [0.3, 0.7],
                subset="virtue",
                split="test",
                options=OPTIONS,
            )
        )
    out.append(
        sample("v3", 1, error="RunError: boom", subset="virtue", split="test", options=OPTIONS)
    )
    return out


def make_dir(tmp_path: Path, **kw: object) -> Path:
    recs = samples()
    extra = kw.pop("extra_items", 0)
    man = manifest(
        recs,
        suite=f"ethics{PAYLOAD}",
        options=OPTIONS,
        item_ids=[r.item_id for r in recs] + [f"missing{i}" for i in range(int(extra))],  # type: ignore[call-overload]
    )
    return write_eval_dir(tmp_path / "run", recs, man, **kw)  # type: ignore[arg-type]


def test_report_has_header_a_table_per_subset_and_the_plots(tmp_path: Path) -> None:
    paths = write_report(make_dir(tmp_path, probes=PROBES))
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "report.html",
            "report.md",
            "plot-reliability.svg",
            "plot-confusion.svg",
            "plot-logodds.svg",
            "plot-probes.svg",
        ]
    )
    html = (tmp_path / "run" / "report.html").read_text("utf-8")
    page = parse(html)
    assert [a["data-subset"] for a in page.find("section", **{"class": "card metrics"})] == [
        "Overall",
        "justice/test",
        "virtue/test",
    ]
    text = " ".join(page.text)
    assert "fake/model" in text and "abababababab" in text and "data/toy.csv" in text
    assert "1 errors" in text and "2026-11-26T14:00:00Z" in text
    # Overall accuracy 5/7 scored; justice 3/4; virtue 2/3. The error is not a wrong answer.
    rows = html.split("<tr><td>accuracy</td>")
    assert [r.split("</td>")[0].split(">")[-1] for r in rows[1:]] == ["0.714", "0.750", "0.667"]
    figures = [a["id"] for a in page.find("figure")]
    assert figures == ["plot-reliability", "plot-confusion", "plot-logodds", "plot-probes"]
    assert len(page.find("svg")) == 4
    assert "Incomplete" not in html and "No summary.json" not in html


def test_page_is_self_contained_and_runs_no_script(tmp_path: Path) -> None:
    write_report(make_dir(tmp_path, probes=PROBES))
    html = (tmp_path / "run" / "report.html").read_text("utf-8")
    page = parse(html)
    csp = page.find("meta", **{"http-equiv": "Content-Security-Policy"})
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")
    assert not page.find("script") and not page.find("link", rel="stylesheet")
    assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)]
    assert not [
        a
        for _, a in page.tags
        if any(v and "http" in v for k, v in a.items() if k in ("src", "href"))
    ]


def test_user_text_is_escaped_in_html_markdown_and_svg(tmp_path: Path) -> None:
    out = make_dir(tmp_path, probes=PROBES)
    write_report(out)
    for path in out.glob("*"):
        if path.suffix in (".html", ".md", ".svg"):
            assert PAYLOAD not in path.read_text("utf-8"), path.name
    html = (out / "report.html").read_text("utf-8")
    assert "ethics&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert f"negate{PAYLOAD}" in " ".join(parse(html).text)  # shown as text, not run
    md = (out / "report.md").read_text("utf-8")
    assert "ethics&lt;script&gt;" in md
    assert "wrong \\| bad" in md  # a pipe in an option cannot split a table cell
    for svg in out.glob("*.svg"):
        xml.dom.minidom.parse(str(svg))  # standalone SVG files are well-formed XML


def test_markdown_has_the_same_tables_and_links_the_plots(tmp_path: Path) -> None:
    out = make_dir(tmp_path)
    write_report(out)
    md = (out / "report.md").read_text("utf-8")
    assert md.count("| metric | value | 95% CI | n | notes |") == 3
    assert "| accuracy | 0.714 |" in md and "### virtue/test" in md
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert links == ["plot-reliability.svg", "plot-confusion.svg", "plot-logodds.svg"]
    assert all((out / link).exists() for link in links)
    assert "Probes" not in md


def test_missing_summary_is_recomputed_and_a_short_run_is_flagged(tmp_path: Path) -> None:
    out = make_dir(tmp_path, with_summary=False, extra_items=2)
    target = tmp_path / "elsewhere"
    paths = write_report(out, target)
    assert all(p.parent == target for p in paths)
    html = (target / "report.html").read_text("utf-8")
    assert "Incomplete run: 8 of 10 items have a sample" in html
    assert "No summary.json yet" in html
    assert "0.714" in html  # the recomputed accuracy
    assert "Incomplete run" in (target / "report.md").read_text("utf-8")


def test_a_written_summary_is_used_and_a_stale_one_is_not(tmp_path: Path) -> None:
    out = make_dir(tmp_path, n_bootstrap=7)
    write_report(out)
    assert "7 resamples" in (out / "report.html").read_text("utf-8")
    # One more sample after summary.json was written: the report recomputes and says why.
    with (out / "samples.jsonl").open("a", encoding="utf-8") as f:
        f.write(sample("late", 0, probs=[0.9, 0.1], options=OPTIONS).model_dump_json() + "\n")
    write_report(out)
    html = (out / "report.html").read_text("utf-8")
    assert "summary.json counts 8 samples but samples.jsonl holds 9" in html
    assert "1000 resamples" in html


def test_a_bad_samples_line_is_an_input_error_naming_file_and_line(tmp_path: Path) -> None:
    out = make_dir(tmp_path)
    lines = (out / "samples.jsonl").read_text("utf-8").splitlines()
    lines[2] = lines[2].replace('"target":', '"targt":')
    (out / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"samples\.jsonl: line 3 is not a valid sample record"):
        write_report(out)
    with pytest.raises(InputError, match=r"no manifest\.json"):
        write_report(tmp_path / "nowhere")
