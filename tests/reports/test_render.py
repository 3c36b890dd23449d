"""Every format from the same result folder: HTML (escaped, self-contained, deterministic plots),
JUnit XML (parsed by junitparser), Markdown, CSV (formula guard), GitHub summary and annotations."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
from pathlib import Path

import junitparser
import pytest
from click.testing import CliRunner
from PIL import Image

from report_fixtures import ARM_NAME, LONG_PROMPT, XSS, XSS_NAMES
from sdeval.cli import main
from sdeval.reports import ReportOptions, render
from sdeval.reports.github import (CUT_NOTE, Annotation, append_step_summary, cut_summary, escape_data,
                                   escape_property)
from sdeval.reports.junit import xml_text


def copy(folder: Path, tmp_path: Path) -> Path:
    dest = tmp_path / folder.name
    shutil.copytree(folder, dest)
    return dest


def all_formats(folder: Path, **kw) -> dict:
    return render(folder, ReportOptions(formats=("html", "junit", "md", "csv"), **kw)).files


def test_gate_report_escapes_every_payload_and_is_self_contained(gate_dir: Path, tmp_path: Path):
    folder = copy(gate_dir, tmp_path)
    files = all_formats(folder)
    page = files["html"].read_text(encoding="utf-8")
    for payload in XSS + XSS_NAMES:
        if any(c in payload for c in "<>\"'"):
            assert payload not in page, payload  # never raw
        else:  # plain text ('javascript:...'): shown, never as a link
            assert payload in page
    assert "&lt;img src=x onerror=" in page and "&lt;/script&gt;&lt;script&gt;" in page
    assert page.count("<script") == 2  # the JSON data block and the sorting script, nothing else
    assert LONG_PROMPT in page  # the whole long prompt is there, folded
    # self-contained: thumbnails inline, nothing fetched from anywhere
    assert not re.search(r'(src|href)="(https?:|//|javascript:)', page)
    assert "data:image/webp;base64," in page
    # policy, verdict, reasons, the failing metric marked
    assert "FAILED" in page and "size_mod8" in page and 'class="fail"' in page
    assert 'id="f-block"' in page and "#f-block:target" in page  # filtering works without JS


def test_thumbnails_carry_pixels_only(gate_dir: Path, tmp_path: Path):
    folder = copy(gate_dir, tmp_path)
    page = all_formats(folder)["html"].read_text(encoding="utf-8")
    uris = re.findall(r'src="data:image/webp;base64,([^"]+)"', page)
    assert uris
    for b64 in uris:
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert im.format == "WEBP" and max(im.size) <= 256
        assert not {"exif", "xmp", "icc_profile"} & set(im.info)


def test_plots_are_deterministic_svg(gate_dir: Path, tmp_path: Path):
    a, b = copy(gate_dir, tmp_path / "a"), copy(gate_dir, tmp_path / "b")
    svg = [re.findall(r"<svg.*?</svg>", all_formats(f)["html"].read_text(encoding="utf-8"), re.S) for f in (a, b)]
    assert svg[0] and svg[0] == svg[1]
    assert all("<text" not in s and "<!--" not in s and "<script" not in s for s in svg[0])


def test_max_images_and_assets_mode(gate_dir: Path, tmp_path: Path):
    folder = copy(gate_dir, tmp_path)
    assets = tmp_path / "assets"
    rendered = render(folder, ReportOptions(formats=("html",), max_images=3, assets_dir=assets))
    page = rendered.files["html"].read_text(encoding="utf-8")
    total = sum(1 for _ in (folder / "results.jsonl").open())
    assert rendered.shown == 3 and rendered.left_out == total - 3
    assert f"{total - 3} more images are not shown" in page
    assert "data:image" not in page
    files = sorted(assets.glob("*.webp"))
    assert files and all(f'src="../assets/{f.name}"' in page or f"../assets/{f.name}" in page for f in files[:1])
    # worst first: the first row is an error or blocked image
    first = re.search(r'<tr class="r-(\w+)" id="img-1"', page).group(1)
    assert first in ("error", "block")


def test_junit_one_case_per_rule_with_numbers_and_errors(gate_dir: Path, tmp_path: Path):
    folder = copy(gate_dir, tmp_path)
    xml = all_formats(folder)["junit"]
    report = junitparser.JUnitXml.fromfile(str(xml))
    suites = list(report)
    assert len(suites) == 1
    suite = suites[0]
    cases = {c.name: c for c in suite}
    policy = json.loads((folder / "summary.json").read_text())["policy"]
    assert len(cases) == len(policy["rules"]) + 2  # + readable images + batch verdict
    mod8 = next(c for n, c in cases.items() if n.startswith("size_mod8"))
    failure, = [r for r in mod8.result if isinstance(r, junitparser.Failure)]
    assert "1 of" in failure.message and "size_mod8 = 4" in failure.text
    err, = [r for r in cases["images are readable"].result if isinstance(r, junitparser.Error)]
    assert "could not be read" in err.message and "svg_script.png" in err.text
    assert suite.failures >= 2 and suite.errors == 1


def test_xml_illegal_characters_are_stripped():
    assert xml_text("a\x00b\x1bc\ud800d\ufffee") == "abcde"


def test_markdown_summary_escapes_and_links(gate_dir: Path, tmp_path: Path):
    folder = copy(gate_dir, tmp_path)
    md = render(folder, ReportOptions(formats=("md",), report_url="https://ci.example/run/7/")).markdown
    assert md.startswith("## sdeval gate ❌ failed")
    assert "(https://ci.example/run/7/report.html)" in md
    assert "<img" not in md and "<script" not in md
    from sdeval.reports.markdown import md as inert

    for payload in XSS + XSS_NAMES:
        text = inert(payload)
        assert "<" not in text and ">" not in text and "|" not in text.replace("\\|", "")
        assert "[" not in text.replace("\\[", "")
    table_rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(line.count(" | ") == table_rows[0].count(" | ") for line in table_rows[:2])


def test_csv_keeps_the_formula_guard(gate_dir: Path, tmp_path: Path):
    folder = copy(gate_dir, tmp_path)
    rows = list(csv.DictReader(io.StringIO(all_formats(folder)["csv"].read_text(encoding="utf-8"))))
    assert len(rows) == sum(1 for _ in (folder / "results.jsonl").open())
    starts = ("=", "+", "-", "@", "\t", "\r")
    assert not any(v.startswith(starts) and not _is_number(v) for r in rows for v in r.values() if v)


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def test_github_escaping_and_summary_limit(tmp_path: Path):
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"
    assert Annotation("error", "x\ny", title="t:1", file="a,b.png").command() == "::error file=a%2Cb.png,title=t%3A1::x%0Ay"
    big = "\n".join("| row %d | %s |" % (i, "x" * 100) for i in range(20000))
    cut, was_cut = cut_summary(big, 1024 * 1024)
    assert was_cut and len(cut.encode()) <= 1024 * 1024 and cut.endswith(CUT_NOTE)
    summary = tmp_path / "step_summary.md"
    summary.write_text("x" * (1024 * 1024 - 2000))
    assert append_step_summary(summary, big)
    assert summary.stat().st_size <= 1024 * 1024


def test_cli_report_rerenders_an_old_folder_with_annotations(gate_dir: Path, tmp_path: Path, monkeypatch):
    folder = copy(gate_dir, tmp_path)
    step = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    r = CliRunner().invoke(main, ["report", str(folder), "--format", "html,junit,md,csv"])
    assert r.exit_code == 0, r.output
    assert (folder / "report.html").is_file() and (folder / "junit.xml").is_file() and (folder / "report.csv").is_file()
    lines = r.output.splitlines()
    errors = [x for x in lines if x.startswith("::error")]
    assert errors and all("\n" not in x for x in errors)
    assert any("file=" in x and "svg_script.png" in x for x in errors)
    assert step.read_text(encoding="utf-8").startswith("## sdeval gate")


def test_cli_report_on_a_folder_that_is_not_a_result_folder_is_exit_2(tmp_path: Path):
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "not an sdeval result folder" in r.output
    r = CliRunner().invoke(main, ["report", str(tmp_path), "--format", "pdf"])
    assert r.exit_code == 2


def test_gate_writes_the_report_at_the_end_unless_no_report(tmp_path: Path):
    from report_fixtures import POLICY, hostile_inputs

    inputs = hostile_inputs(tmp_path / "in", 2)
    (tmp_path / "p.toml").write_text(POLICY)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["gate", str(inputs), "--policy", str(tmp_path / "p.toml"), "--out", str(out)])
    assert r.exit_code == 1, r.output  # the gate fails: the report keeps its exit code
    assert {p.name for p in out.iterdir()} >= {"report.html", "junit.xml", "summary.md"}
    out2 = tmp_path / "out2"
    r = CliRunner().invoke(main, ["gate", str(inputs), "--policy", str(tmp_path / "p.toml"), "--out", str(out2),
                                  "--no-report"])
    assert r.exit_code == 1 and not (out2 / "report.html").exists()


def test_eval_report_shows_set_metrics_protocol_and_distributions(eval_dir: Path, tmp_path: Path):
    folder = copy(eval_dir, tmp_path)
    files = all_formats(folder)
    page = files["html"].read_text(encoding="utf-8")
    assert "41.5" in page and "small N" in page and "ab" * 32 in page and "fid &gt; 50" in page
    assert page.count('class="plot"') == 2  # pixel_std and pixel_max distributions
    assert XSS[0] not in page and XSS[1] not in page
    cases = {c.name for c in list(junitparser.JUnitXml.fromfile(str(files["junit"])))[0]}
    assert "not (fid > 50)" in cases and "fid computed" in cases


def test_compare_report_from_a_real_comparison(compare_dir: Path, tmp_path: Path):
    folder = copy(compare_dir, tmp_path)
    files = all_formats(folder)
    page = files["html"].read_text(encoding="utf-8")
    compare = json.loads((folder / "compare.json").read_text())
    assert compare["verdict"]["regression"] and "REGRESSION" in page
    assert ARM_NAME not in page and "cand&lt;/script&gt;" in page
    assert page.count('<tr class="r-') == len(compare["metrics"])
    assert 'aria-label="forest plot"' in page and "Distributions per arm" in page
    assert page.count('class="pair r-regression"') >= 2  # baseline | candidate pairs for the regressions
    assert "lonely.png" in page  # the unpaired image is listed
    suite = list(junitparser.JUnitXml.fromfile(str(files["junit"])))[0]
    regressed = [c for c in suite if any(isinstance(r, junitparser.Failure) for r in c.result)]
    assert len(regressed) == sum(m["decision"] == "regressed" for m in compare["metrics"]) + 1
    md = files["md"].read_text(encoding="utf-8")
    assert "regression" in md and "<script" not in md


def test_compare_report_shows_human_votes_with_bradley_terry(compare_dir: Path, tmp_path: Path):
    """Three arms' votes (the statistics of sdeval.compare.votes) appear in the report's human section."""
    from sdeval.compare.votes import summarise

    folder = copy(compare_dir, tmp_path)
    pairs = {f"p{i}": {"id": f"p{i}", "left": a, "right": b, "cluster": f"c{i // 2}"}
             for i, (a, b) in enumerate([("x", "y"), ("y", "z"), ("x", "z")] * 6)}
    votes = [{"rater": "ann" if i % 2 else "bob", "pair_id": pid, "choice": 1 if i % 4 else 0}
             for i, pid in enumerate(pairs)]
    compare = json.loads((folder / "compare.json").read_text())
    compare["human"] = summarise(votes, pairs, ["x", "y", "z"], "x", resamples=100)
    (folder / "compare.json").write_text(json.dumps(compare))
    page = render(folder, ReportOptions(formats=("html",))).files["html"].read_text(encoding="utf-8")
    assert 'id="human-table"' in page and "Bradley–Terry ranking" in page
    assert page.count("<tr><td class=\"num\">") >= 3  # one ranked row per arm
    assert "18 vote(s) from 2 rater(s)" in page
