"""What the CLI prints: untrusted strings never act as rich markup and never crash the summary."""

from __future__ import annotations

from types import SimpleNamespace

from sdeval.cli.output import plain, print_eval_summary, print_gate_summary


def _gate_summary(path: str, reason: str) -> dict:
    return {"counts": {"pass": 0, "block": 1}, "top_reasons": [{"reason": reason, "count": 1}],
            "worst": [{"path": path, "verdict": "block", "reasons": [reason]}],
            "inputs": {"skipped_non_images": {}, "duplicates": []},
            "timing": {"seconds": 1.0, "images_per_second": 1.0}, "images": 1,
            "verdict": {"passed": False, "pass_rate": 0.0, "reasons": [reason]}, "out_dir": "[out"}


def test_markup_in_paths_and_reasons_is_printed_literally(capsys):
    path, reason = "[/x].png", "nsfw [bold]0.9[/bold] \ud800 -> block"
    print_gate_summary(SimpleNamespace(summary=_gate_summary(path, reason)), err=False)
    out = capsys.readouterr().out
    assert "[/x].png" in out and "[bold]0.9[/bold]" in out and "\\ud800" in out and "[out/results" in out


def test_eval_summary_warnings_with_markup(capsys):
    s = {"set_metrics": {}, "metrics": {}, "warnings": ["folder [ has [/] a bracket"], "images": 1,
         "timing": {"seconds": 1.0}, "fail_if": [{"rule": "fid > 1"}], "failures": ["fid [red]2 > 1"],
         "out_dir": "x[/]"}
    print_eval_summary(SimpleNamespace(summary=s), err=False)
    out = capsys.readouterr().out
    assert "folder [ has [/] a bracket" in out and "fid [red]2 > 1" in out


def test_plain_escapes():
    assert plain("[b]x[/b]") == "\\[b]x\\[/b]"
