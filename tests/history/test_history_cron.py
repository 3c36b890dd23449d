"""End to end: a cron-style loop of ``sdeval eval`` and ``sdeval gate`` with --history into SQLite and
PostgreSQL; trend, alerts and the dashboard read it; a planted regression exits 1 and notifies the
loopback webhook."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hist_data import image_folder
from sdeval.cli import main
from test_history_notify import Hook


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_nightly_loop_records_trends_alerts_and_notifies(store_url: str, tmp_path: Path) -> None:
    images = tmp_path / "nightly"
    hook = Hook()
    policy = tmp_path / "policy.toml"
    policy.write_text('checks = ["blank"]\nmin_pass_rate = 0.5\n', encoding="utf-8")
    try:
        for night in range(4):
            image_folder(images, seed=night, contrast=60.0)
            code, out, err = _run("eval", str(images), "--metrics", "pixel_std", "--out", str(tmp_path / f"e{night}"),
                                  "--history", store_url, "--label", "nightly", "--tag", f"night={night}",
                                  "--alert-on-regression", "--notify", hook.url, "--json")
            assert code == 0, err
            assert json.loads(out)["command"] == "eval"  # stdout stays the summary
            assert "history: recorded run" in err
            code, _, err = _run("gate", str(images), "--policy", str(policy), "--out", str(tmp_path / f"g{night}"),
                                "--history", store_url, "--label", "gate-nightly", "--history-images",
                                "--alert-on-regression", "--notify", hook.url)
            assert code == 0, err
        assert hook.bodies == []
        # the planted regression: washed-out images (pixel_std drops from ~57 to ~15)
        image_folder(images, seed=99, contrast=15.0)
        code, _, err = _run("eval", str(images), "--metrics", "pixel_std", "--out", str(tmp_path / "e-bad"),
                            "--history", store_url, "--label", "nightly", "--alert-on-regression",
                            "--notify", hook.url)
        assert code == 1, err
        assert "history: ALERT pixel_std:" in err and "posted to the webhook" in err
        (body,) = hook.bodies
        assert "nightly" in body["text"] and body["sdeval"]["alerts"][0]["metric"] == "pixel_std"
        # one blank image of four: the gate still passes its policy, but pass rate falls: exit 1 on the alert
        image_folder(images, seed=5, contrast=60.0)
        from PIL import Image

        Image.new("RGB", (64, 64), (0, 0, 0)).save(images / "img0.png")
        code, _, err = _run("gate", str(images), "--policy", str(policy), "--out", str(tmp_path / "g-bad"),
                            "--history", store_url, "--label", "gate-nightly", "--alert-on-regression")
        assert code == 1 and "ALERT pass_rate" in err, err
    finally:
        hook.close()

    code, out, err = _run("history", "trend", "pixel_std", "--label", "nightly", "--history", store_url, "--json")
    assert code == 0, err
    trend = json.loads(out)
    assert trend["metric"] == "pixel_std" and trend["label"] == "nightly" and len(trend["points"]) == 5
    assert [p["alert"] for p in trend["points"]] == [False] * 4 + [True]
    code, out, _ = _run("history", "trend", "pixel_std", "--label", "nightly", "--history", store_url)
    assert code == 0 and "ALERT" in out and out.strip().splitlines()[-1][-1] == "▁"
    code, out, _ = _run("history", "alerts", "--history", store_url, "--json")
    found = json.loads(out)["alerts"]
    assert {(a["label"], a["metric"]) for a in found} >= {("nightly", "pixel_std"), ("gate-nightly", "pass_rate")}
    code, _, _ = _run("history", "alerts", "--history", store_url, "--fail")
    assert code == 1
    code, out, _ = _run("history", "list", "--history", store_url, "--json", "--label", "gate-nightly")
    runs = json.loads(out)["runs"]
    assert len(runs) == 5 and runs[-1]["exit_status"] == 0 and runs[0]["tags"] == {}
    code, out, _ = _run("history", "show", str(runs[0]["id"]), "--images", "--history", store_url, "--json")
    shown = json.loads(out)
    assert shown["image_rows"] == 4 and len({i["content_hash"] for i in shown["images"]}) == 4
    code, out, _ = _run("history", "diff", str(runs[0]["id"]), str(runs[-1]["id"]), "--history", store_url, "--json")
    assert {v["name"]: v for v in json.loads(out)["values"]}["pass_rate"]["change"] == "worse"
    dash = tmp_path / "dashboard.html"
    code, _, err = _run("history", "report", "--history", store_url, "--out", str(dash))
    assert code == 0, err
    html = dash.read_text(encoding="utf-8")
    assert "gate-nightly" in html and "pass_rate" in html and html.count('class="al"') >= 2


def test_a_history_that_fails_after_the_run_is_exit_2_and_says_how_to_record_later(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    import sdeval.history.service as service
    from sdeval.history.store import HistoryError

    images = image_folder(tmp_path / "imgs", seed=1)
    db = str(tmp_path / "h.db")

    def broken(*a, **k):
        raise HistoryError(f"history {db}: the run was not recorded: disk I/O error")

    monkeypatch.setattr(service, "record_result", broken)
    code, _, err = _run("eval", str(images), "--metrics", "pixel_std", "--out", str(tmp_path / "e"), "--history", db)
    assert code == 2 and "not recorded" in err and "sdeval history add" in err, err
    assert (tmp_path / "e" / "summary.json").is_file()
