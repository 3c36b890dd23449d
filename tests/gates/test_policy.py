from __future__ import annotations

from pathlib import Path

import pytest

from sdeval.core.config import TomlSource
from sdeval.gates.sources import policy_source, preset_names
from sdeval.core.errors import MetricUnavailableError, PolicyError
from sdeval.gates.policy import build_policy
from sdeval.gates.rules import parse_rule


def src(text: str, name: str = "gates.toml") -> TomlSource:
    import tomllib

    return TomlSource(tomllib.loads(text), name=name, text=text)


def test_checks_expand_to_rules_in_order():
    p = build_policy(src('checks = ["blank", "resolution"]'))
    assert [r.metric for r in p.rules] == ["pixel_std", "pixel_max", "size_error", "size_mod8"]
    assert p.metrics == ["pixel_std", "pixel_max", "size_error", "size_mod8"]
    assert p.min_pass_rate == 1.0 and p.allow_errors is False
    # both are Missing only when there is nothing to compare (size_mod8: a pixel-space resize)
    assert [r.on_missing for r in p.rules[2:]] == ["ignore", "ignore"]


def test_family_expands():
    p = build_policy(src('checks = ["offline"]'))
    assert p.checks[:3] == ("blank", "resolution", "nsfw")


def test_shorthand_uses_metric_default_action():
    p = build_policy(src("max_nsfw = 0.3"))
    (rule,) = p.rules
    assert (rule.metric, rule.op, rule.threshold, rule.action) == ("nsfw", ">", 0.3, "block")


def test_rule_strings_and_tables():
    p = build_policy(src('rules = ["pixel_std < 4 -> block", '
                         '{metric = "size_mod8", op = ">", threshold = 0, on_missing = "ignore"}]'))
    a, b = p.rules
    assert (a.metric, a.op, a.threshold, a.action) == ("pixel_std", "<", 4.0, "block")
    assert (b.metric, b.action, b.on_missing) == ("size_mod8", "block", "ignore")


def test_check_tuning():
    p = build_policy(src('checks = ["blank"]\n[check.blank]\npixel_std = 5.0\naction = "block"\n'))
    assert {(r.metric, r.threshold, r.action) for r in p.rules} == {("pixel_std", 5.0, "block"),
                                                                    ("pixel_max", 8.0, "block")}


def test_cli_overrides_win_and_extend():
    p = build_policy(src('checks = ["blank"]\nmax_nsfw = 0.5\nmin_pass_rate = 0.5'),
                     {"max_nsfw": 0.9, "checks": ["resolution"], "min_pass_rate": 0.8})
    assert [r.threshold for r in p.rules if r.metric == "nsfw"] == [0.9]
    assert "size_mod8" in p.metrics and "pixel_std" in p.metrics
    assert p.min_pass_rate == 0.8
    assert p.sources == ("gates.toml", "command line")


@pytest.mark.parametrize("text, key, line", [
    ('checks = ["blank"]\nmin_pas_rate = 0.5\n', "min_pas_rate", 2),
    ('checks = ["blank"]\n\n[check.blank]\npixel_sd = 3\n', "pixel_sd", 4),
    ('rules = [{metric = "nsfw", op = ">", threshold = 0.5, actoin = "block"}]\n', "actoin", 1),
])
def test_unknown_keys_name_key_file_and_line(text, key, line):
    with pytest.raises(PolicyError) as info:
        build_policy(src(text))
    msg = str(info.value)
    assert f"'{key}'" in msg and f"gates.toml:{line}" in msg


def test_did_you_mean_for_typos():
    with pytest.raises(PolicyError, match="did you mean 'min_pass_rate'"):
        build_policy(src("min_pass_rat = 0.5"))
    with pytest.raises(PolicyError, match="did you mean 'blank'"):
        build_policy(src('checks = ["blnk"]'))
    with pytest.raises(PolicyError, match="did you mean 'pixel_std'"):
        build_policy(src('rules = ["pixel_sdt < 3"]'))


@pytest.mark.parametrize("text, fragment", [
    ("min_pass_rate = 2", "between 0.0 and 1.0"),
    ('min_pass_rate = "high"', "must be a number"),
    ("allow_errors = 1", "true or false"),
    ('rules = ["nsfw >> 0.5"]', "cannot parse rule"),
    ('rules = ["nsfw > 0.5 -> explode"]', "unknown action"),
    ('resolution = "big"', "1024x1024"),
    ('[check.blank]\naction = "nuke"', "action 'nuke'"),
])
def test_bad_values(text, fragment):
    with pytest.raises(PolicyError, match=fragment):
        build_policy(src(text))


def test_unavailable_metric_names_what_is_missing(monkeypatch):
    from sdeval.metrics import registry

    monkeypatch.setitem(registry._PLANNED, "wow_score", ("not in this build", "install sdeval-wow"))
    with pytest.raises(MetricUnavailableError) as info:
        build_policy(src("min_wow_score = 0.2"))
    assert "wow_score" in str(info.value) and "how to get it: install sdeval-wow" in str(info.value)


def test_parse_rule():
    r = parse_rule("clip_score >= 0.25 -> reprompt")
    assert r.fires(0.3) and not r.fires(0.2)
    assert r.describe() == "clip_score >= 0.25 -> reprompt"
    assert not r.fires(float("nan"))


def test_sources_order(tmp_path: Path):
    assert policy_source(None, tmp_path).name == "preset 'default'"
    (tmp_path / "pyproject.toml").write_text('[tool.sdeval.gate]\nchecks = ["blank"]\n')
    s = policy_source(None, tmp_path)
    assert s.name.endswith("pyproject.toml") and s.data == {"checks": ["blank"]}
    (tmp_path / "sdeval.toml").write_text('[gate]\nchecks = ["resolution"]\n')
    assert policy_source(None, tmp_path).data == {"checks": ["resolution"]}
    f = tmp_path / "g.toml"
    f.write_text('checks = ["nsfw"]\n')
    assert policy_source(str(f), tmp_path).data == {"checks": ["nsfw"]}


def test_pyproject_unknown_key_points_at_line(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.sdeval.gate]\nchecks = ["blank"]\n'
                                             'max_nsfww = 0.5\n')
    with pytest.raises(PolicyError, match=r"pyproject.toml:6: .*'max_nsfww'"):
        build_policy(policy_source(None, tmp_path))


def test_presets_parse():
    from sdeval.gates.sources import load_preset

    assert {"default", "strict", "offline"} <= set(preset_names())
    for name in preset_names():
        assert build_policy(load_preset(name)).rules


def test_missing_policy_file_and_unknown_preset():
    with pytest.raises(PolicyError, match="not found"):
        policy_source("nope/gates.toml")
    with pytest.raises(PolicyError, match="no policy file or preset named 'nope'"):
        policy_source("nope")


def test_unknown_option_names_key_line_and_did_you_mean():
    text = 'checks = ["blank"]\n\n[options]\ndevice = "cpu"\ndevcie = "cuda"\n'
    with pytest.raises(PolicyError) as info:
        build_policy(src(text))
    msg = str(info.value)
    assert "unknown option 'devcie'" in msg and "gates.toml:5" in msg and "did you mean 'device'" in msg


def test_known_options_pass_through():
    text = ('checks = ["blank"]\n[options]\ndevice = "cpu"\nclip_model = "ViT-B-32"\nlpips_size = 64\n'
            'model_paths = {"lpips-alex" = "/w/alex.pth"}\nkid_subsets = 10\nnsfw_model = "m.onnx"\n')
    p = build_policy(src(text))
    assert p.options["device"] == "cpu" and p.options["lpips_size"] == 64
    assert p.options["model_paths"] == {"lpips-alex": "/w/alex.pth"}


def test_options_known_are_the_declared_ones(monkeypatch):
    """The union of every metric's and feature extractor's ``option_names`` plus the run options:
    a metric registered at run time brings its own options."""
    from sdeval.metrics import registry
    from sdeval.metrics.base import ImageMetric

    class Spread(ImageMetric):
        name = "policy_test_spread"
        requires = ("pixel_stats",)
        higher_is_better = True
        option_names = ("spread_scale",)

        def compute(self, batch):
            return [0.0 for _ in batch.records]

    known = registry.option_names()
    assert {"device", "offline", "model_paths", "resolution", "clip_model", "lpips_net", "fid_mode"} <= known
    assert "spread_scale" not in known
    with pytest.raises(PolicyError, match="spread_scale"):
        build_policy(src("[options]\nspread_scale = 2\n"))
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(registry, "_origins", dict(registry._origins))
    registry.register(Spread)
    assert build_policy(src("[options]\nspread_scale = 2\n")).options == {"spread_scale": 2}


def test_unknown_option_in_policy_file_is_exit_2(tmp_path: Path, photo_dir: Path):
    from click.testing import CliRunner

    from sdeval.cli import main

    policy = tmp_path / "gates.toml"
    policy.write_text('checks = ["blank"]\n[options]\ndevcie = "cuda"\n')
    r = CliRunner().invoke(main, ["gate", str(photo_dir), "--policy", str(policy), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "unknown option 'devcie'" in r.output and "gates.toml:3" in r.output and "'device'" in r.output
    assert not (tmp_path / "o").exists()
