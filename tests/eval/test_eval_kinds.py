"""What a run does with a metric follows from its declared ``kind`` (DESIGN.md, metrics contract).

Metrics of every kind written as a third party would (no sdeval class to inherit beyond the
kind's interface) run through ``eval_set`` and the gate; a value outside a metric's declared
``range`` is never a score.
"""

from __future__ import annotations

import csv
import sys
from itertools import combinations
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from eval_models import restore_offline, write_images  # noqa: E402,F401

from sdeval.features import registry as fregistry  # noqa: E402
from sdeval.features.base import FeatureExtractor  # noqa: E402
from sdeval.inputs.decode import decode  # noqa: E402
from sdeval.metrics import registry  # noqa: E402
from sdeval.metrics.base import GroupMetric, GroupValue, ImageMetric  # noqa: E402
from sdeval.metrics.set_base import SetMetric, SetValue  # noqa: E402
from sdeval.pipeline.run import RunOptions  # noqa: E402


class MeanColour(FeatureExtractor):
    id = "test_mean_colour"
    option_names = ("colour_scale",)

    def __init__(self, options: Any = None) -> None:
        self.scale = float((options or {}).get("colour_scale") or 1.0)

    def prepare(self, image: np.ndarray, record: Any) -> np.ndarray:
        return (image.reshape(-1, 3).astype(np.float64).mean(0) * self.scale).astype(np.float32)


class MeanShift(SetMetric):
    name = "test_mean_shift"
    feature = "test_mean_colour"
    keeps = ("stats",)
    higher_is_better = False

    def value(self, generated: Any, reference: Any) -> SetValue:
        g, r = generated.finalize_stats(), reference.finalize_stats()
        return SetValue(self.name, float(np.linalg.norm(g.mu - r.mu)), {"n_generated": generated.n})


class GroupSpread(GroupMetric):
    name = "test_group_spread"
    feature = "test_mean_colour"
    higher_is_better = True

    def group_value(self, key: str, features: Any, errors: int, sampled: bool) -> GroupValue:
        pairs = list(combinations(features, 2))
        mean = float(np.mean([np.linalg.norm(a - b) for a, b in pairs])) if pairs else None
        return GroupValue(key, len(features), len(pairs), mean, sampled, errors)

    def summarize(self, groups: Any, counts: Any) -> dict[str, Any]:
        scored = [g.mean for g in groups if g.mean is not None]
        return {"value": float(np.mean(scored)), "groups": len(scored), "warnings": []}


class Brightness01(ImageMetric):
    """Declares [0, 1] but returns raw 0-255 levels for bright images, NaN for black ones: a bug."""

    name = "test_bright01"
    requires = ("test_mean_colour",)
    higher_is_better = True
    range = (0.0, 1.0)

    def compute(self, batch: Any) -> list[float]:
        out = []
        for v in batch["test_mean_colour"]:
            level = float(np.mean(v))
            out.append(float("nan") if level == 0 else (level if level > 128 else level / 255))
        return out


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(registry, "_origins", dict(registry._origins))
    monkeypatch.setitem(fregistry._REGISTERED, "test_mean_colour", MeanColour)
    for cls in (MeanShift, GroupSpread, Brightness01):
        registry.register(cls)
    yield


def test_set_and_group_metrics_run_by_kind(tmp_path: Path, registered: None) -> None:
    gen = write_images(tmp_path / "gen", 7, seed=3)
    write_images(tmp_path / "ref", 5, seed=4)
    groups = ["a", "a", "a", "b", "b", "c", None]
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group"])
        for p, g in zip(gen, groups):
            w.writerow([str(p), g or ""])
    from sdeval.evaluate.set_eval import eval_set

    result = eval_set(str(manifest), ref=str(tmp_path / "ref"), metrics="test_group_spread,test_mean_shift",
                      options=RunOptions(batch_size=3, workers=2, cache=False,
                                         metric_options={"colour_scale": 0.5}),
                      distributed=False)

    def feats(paths: list[Path]) -> np.ndarray:
        ex = MeanColour({"colour_scale": 0.5})
        return np.stack([ex.prepare(decode(p.read_bytes()), None) for p in paths])

    g, r = feats(gen), feats(sorted((tmp_path / "ref").iterdir()))
    assert result.values["test_mean_shift"] == pytest.approx(
        float(np.linalg.norm(g.astype(np.float64).mean(0) - r.astype(np.float64).mean(0))), rel=1e-6)
    spreads = [np.mean([np.linalg.norm(a - b) for a, b in combinations(g[idx], 2)])
               for idx in ([0, 1, 2], [3, 4])]
    assert result.values["test_group_spread"] == pytest.approx(float(np.mean(spreads)), rel=1e-6)
    assert list(result.set_metrics) == ["test_group_spread", "test_mean_shift"]  # the order asked for
    assert result.set_metrics["test_group_spread"]["groups"] == 2
    assert result.set_metrics["test_group_spread"]["features"]["test_mean_colour"]["computed"] == 5
    assert result.columns[-1] != "test_mean_shift" and result.rows[0].get("test_mean_shift") is None


def test_set_metric_in_a_gate_rule_is_a_usage_error(photo_dir: Path, registered: None) -> None:
    import sdeval
    from sdeval.core.config import TomlSource
    from sdeval.core.errors import UsageError
    from sdeval.gates.policy import build_policy

    policy = build_policy(TomlSource({"rules": ["test_mean_shift > 1"]}, name="t"))
    with pytest.raises(UsageError, match="set-level metric"):
        sdeval.gate(str(photo_dir / "astronaut.png"), policy)


def test_value_outside_the_declared_range_is_missing_and_fails_the_rule(tmp_path: Path, registered: None) -> None:
    import sdeval
    from PIL import Image

    from sdeval.core.config import TomlSource
    from sdeval.gates.policy import build_policy

    for name, level in (("white", 250), ("black", 0), ("grey", 100)):
        Image.fromarray(np.full((32, 32, 3), level, np.uint8)).save(tmp_path / f"{name}.png")
    policy = build_policy(TomlSource({"rules": ["test_bright01 < 0.01 -> reseed"]}, name="t"))
    result = sdeval.gate(str(tmp_path), policy, options=RunOptions(workers=1, cache=False))
    rows = {Path(r["path"]).stem: r for r in result.rows}
    assert rows["grey"]["test_bright01"] == pytest.approx(100 / 255) and rows["grey"]["verdict"] == "pass"
    assert rows["white"]["test_bright01"] is None and rows["white"]["verdict"] == "reseed"
    assert "gave 250, above its range maximum 1" in rows["white"]["missing"]["test_bright01"]
    assert rows["black"]["test_bright01"] is None and rows["black"]["verdict"] == "reseed"
    assert "non-finite" in rows["black"]["missing"]["test_bright01"]  # NaN used to pass every rule
