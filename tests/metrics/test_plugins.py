"""Metric plug-ins as users install them: real distributions with an ``sdeval.metrics`` entry point.

Each test writes a tiny distribution at test time — a package plus a ``*.dist-info`` folder
(METADATA, entry_points.txt), which is what ``pip install`` leaves in site-packages — into a
temp folder put on ``sys.path``, and sdeval finds it through ``importlib.metadata`` entry points.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from sdeval.cli import main
from sdeval.core.errors import MetricUnavailableError, UsageError
from sdeval.metrics import registry
from sdeval.metrics.registry import PluginWarning

ROOT = Path(__file__).resolve().parents[2]

SHARPISH = '''
from sdeval.metrics.base import ImageMetric


class Sharpish(ImageMetric):
    name = "sharpish"
    requires = ("pixel_stats",)
    higher_is_better = True
    range = (0.0, None)
    option_names = ("sharpish_gain",)

    def compute(self, batch):
        gain = float(self.options.get("sharpish_gain") or 1.0)
        return [gain * f["luma_std"] for f in batch["pixel_stats"]]
'''

FAKE_FID = '''
from sdeval.metrics.set_base import SetMetric, SetValue


class FakeFid(SetMetric):
    name = "fid"
    feature = "inception"
    higher_is_better = False

    def value(self, generated, reference):
        return SetValue("fid", -1.0)
'''

DUPE = '''
from sdeval.metrics.base import ImageMetric


class Dupe(ImageMetric):
    name = "dupe"
    higher_is_better = True

    def compute(self, batch):
        return [1.0 for _ in batch.records]
'''


def install(site: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
    """What ``pip install`` leaves in site-packages: the modules and ``<dist>-<version>.dist-info``."""
    for module, code in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[sdeval.metrics]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items()))
    (info / "RECORD").write_text("")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp site-packages on sys.path; the registry reads the entry points again before and after."""
    import importlib

    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    importlib.invalidate_caches()
    before = set(sys.modules)
    registry.reload_plugins()
    yield path
    for name in set(sys.modules) - before:
        if name.startswith("sdeval_test_"):
            del sys.modules[name]
    monkeypatch.undo()
    importlib.invalidate_caches()
    registry.reload_plugins()


def test_installed_plugin_is_listed_with_its_distribution_and_runs_in_a_gate(site: Path, photo_dir: Path,
                                                                              tmp_path: Path) -> None:
    install(site, "sdeval-sharpish", "1.2.0", {"sdeval_test_sharpish": SHARPISH},
            {"sharpish": "sdeval_test_sharpish:Sharpish"})
    assert "sharpish" in registry.names()
    origin = registry.origin("sharpish")
    assert (origin.kind, origin.distribution, origin.version) == ("plug-in", "sdeval-sharpish", "1.2.0")
    assert registry.origin("fid").describe() == "built-in"
    assert "sharpish_gain" in registry.option_names()  # a plug-in's options are valid in [options]

    r = CliRunner().invoke(main, ["metrics"])
    line = next(x for x in r.output.splitlines() if x.startswith("sharpish "))
    assert "plug-in sdeval-sharpish 1.2.0" in line
    assert "built-in" in next(x for x in r.output.splitlines() if x.startswith("fid "))

    policy = tmp_path / "p.toml"
    policy.write_text('rules = ["sharpish < 1 -> reseed"]\n[options]\nsharpish_gain = 2\n')
    import sdeval

    result = sdeval.gate(str(photo_dir / "black.png"), str(policy))
    (row,) = result.rows
    assert row["sharpish"] == 0.0 and row["verdict"] == "reseed"


def test_broken_plugin_warns_and_fails_only_the_run_that_uses_it(site: Path) -> None:
    install(site, "sdeval-broken", "0.3", {"sdeval_test_broken": "raise ImportError('needs libfoo')\n"},
            {"broken_metric": "sdeval_test_broken:Broken"})
    with pytest.warns(PluginWarning, match=r"'broken_metric'.*sdeval-broken 0\.3.*needs libfoo"):
        names = registry.names()
    assert "broken_metric" not in names and "fid" in names  # the rest of the registry works
    (problem,) = registry.plugin_problems()
    assert problem.origin.distribution == "sdeval-broken" and problem.fatal_for == "broken_metric"
    assert registry.resolve("pixel_std") == "pixel_std"
    with pytest.raises(MetricUnavailableError, match=r"sdeval-broken.*needs libfoo") as info:
        registry.resolve("broken_metric")
    assert info.value.exit_code == 2 and "pip uninstall sdeval-broken" in str(info.value)


def test_broken_plugin_in_a_real_gate_process(site: Path, photo_dir: Path, tmp_path: Path) -> None:
    """`sdeval gate` as a user runs it: exit 0 with a warning when no rule uses the broken plug-in,
    exit 2 naming it and its distribution when one does."""
    install(site, "sdeval-broken", "0.3", {"sdeval_test_broken": "raise ImportError('needs libfoo')\n"},
            {"broken_metric": "sdeval_test_broken:Broken"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "SDEVAL_CACHE_DIR": str(tmp_path / "cache")}
    blank = tmp_path / "blank.toml"
    blank.write_text('checks = ["blank"]\n')
    image = str(photo_dir / "astronaut.png")
    ok = subprocess.run([sys.executable, "-m", "sdeval", "gate", image, "--policy", str(blank),
                         "--out", str(tmp_path / "ok")], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "broken_metric" in ok.stderr and "sdeval-broken 0.3" in ok.stderr
    uses = tmp_path / "uses.toml"
    uses.write_text('rules = ["broken_metric < 1"]\n')
    bad = subprocess.run([sys.executable, "-m", "sdeval", "gate", image, "--policy", str(uses),
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "error:" in bad.stderr and "broken_metric" in bad.stderr and "sdeval-broken" in bad.stderr


def test_plugin_cannot_take_a_builtin_name(site: Path) -> None:
    from sdeval.metrics.fid import Fid

    install(site, "fid-squatter", "9.9", {"sdeval_test_squat": FAKE_FID},
            {"fid": "sdeval_test_squat:FakeFid", "clip": "sdeval_test_squat:FakeFid"})
    with pytest.warns(PluginWarning) as caught:
        cls = registry.get_class("fid")
    assert cls is Fid and registry.origin("fid").kind == "built-in"  # the built-in stays
    messages = [str(w.message) for w in caught]
    assert any("fid-squatter 9.9" in m and "built-in metric 'fid' of sdeval" in m for m in messages)
    assert registry.resolve("clip") == "clip_score"  # an alias of a built-in cannot be taken either
    assert all(p.fatal_for is None for p in registry.plugin_problems())
    assert registry.create("fid").value.__qualname__ == "Fid.value"


def test_two_plugins_with_one_name_are_both_refused(site: Path) -> None:
    install(site, "dupe-a", "1.0", {"sdeval_test_dupe_a": DUPE}, {"dupe": "sdeval_test_dupe_a:Dupe"})
    install(site, "dupe-b", "2.0", {"sdeval_test_dupe_b": DUPE}, {"dupe": "sdeval_test_dupe_b:Dupe"})
    with pytest.warns(PluginWarning, match="claimed by more than one plug-in"):
        assert "dupe" not in registry.names()
    with pytest.raises(MetricUnavailableError) as info:
        registry.resolve("dupe")
    assert "dupe-a 1.0" in str(info.value) and "dupe-b 2.0" in str(info.value)


def test_plugin_must_implement_its_kind(site: Path) -> None:
    code = '''
from sdeval.metrics.base import ImageMetric


class Lies(ImageMetric):
    name = "lies"
    kind = "set"
    higher_is_better = True

    def compute(self, batch):
        return []
'''
    install(site, "sdeval-lies", "0.1", {"sdeval_test_lies": code}, {"lies": "sdeval_test_lies:Lies"})
    with pytest.warns(PluginWarning, match="declares kind 'set' but does not implement"):
        assert "lies" not in registry.names()


def test_register_refuses_builtin_names() -> None:
    from sdeval.metrics.base import ImageMetric

    class Blur(ImageMetric):
        name = "blur"
        higher_is_better = False

        def compute(self, batch):
            return []

    with pytest.raises(UsageError, match="built-in"):
        registry.register(Blur)
    assert registry.get_class("blur").__module__ == "sdeval.metrics.artifacts"


def test_builtin_aliases_table_matches_the_classes() -> None:
    declared = {alias: name for name in registry._BUILTIN for alias in registry.get_class(name).aliases}
    assert declared == registry.BUILTIN_ALIASES
