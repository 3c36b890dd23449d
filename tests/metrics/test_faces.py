"""Face metrics (sdeval[faces]): OpenCV's Haar cascade on scikit-image's bundled photos."""

from __future__ import annotations

import sys
import types
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from sdeval.core.errors import MetricUnavailableError
from sdeval.features import faces as F
from sdeval.gates.checks import CHECKS
from sdeval.gates.policy import build_policy
from sdeval.gates.sources import load_preset
from sdeval.inputs.record import ImageRecord
from sdeval.metrics import registry
from sdeval.metrics.base import FeatureBatch, Missing

NAMES = ["face_count", "face_size", "face_sharpness", "face_confidence"]


def face_metrics(img: np.ndarray) -> dict[str, float | Missing]:
    metrics = [registry.create(n) for n in NAMES]
    ex = metrics[0].feature_extractors()[0]
    record = ImageRecord(path="x.png", format="PNG")
    batch = FeatureBatch(records=[record], features={ex.id: list(ex.compute([ex.prepare(img, record)]))})
    return {m.name: m.compute(batch)[0] for m in metrics}


def resized(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = short / min(h, w)
    return cv2.resize(img, (round(w * s), round(h * s)),
                      interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA)


def test_astronaut_has_exactly_one_face():
    got = face_metrics(skdata.astronaut())
    assert got["face_count"] == 1.0
    assert 0.02 < got["face_size"] < 0.06  # a 95 px box in a 512 px square: 0.034
    assert got["face_confidence"] > 3.0
    sharp = next(r for r in CHECKS["face"].rules if r.metric == "face_sharpness")
    assert not sharp.fires(got["face_sharpness"])


def test_coffee_has_no_face():
    got = face_metrics(skdata.coffee())
    assert got["face_count"] == 0.0
    assert got["face_size"] == 0.0
    assert isinstance(got["face_sharpness"], Missing) and isinstance(got["face_confidence"], Missing)


def test_face_count_and_size_do_not_depend_on_resolution():
    a = face_metrics(skdata.astronaut())
    b = face_metrics(resized(skdata.astronaut(), 1024))
    assert a["face_count"] == b["face_count"] == 1.0
    assert b["face_size"] == pytest.approx(a["face_size"], rel=0.1)


def test_a_blurred_face_fires_the_face_check():
    got = face_metrics(cv2.GaussianBlur(skdata.astronaut(), (0, 0), 3.0))
    assert got["face_count"] == 1.0  # still found ...
    rule = next(r for r in CHECKS["face"].rules if r.metric == "face_sharpness")
    assert rule.fires(got["face_sharpness"])  # ... and sent to restore_face
    assert rule.action == "restore_face"


def test_prepare_is_thread_safe():
    ex = F.FaceSignals()
    rec = ImageRecord(path="x")
    imgs = [skdata.astronaut(), skdata.coffee()] * 4
    expected = [ex.prepare(i, rec) for i in imgs[:2]] * 4
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: ex.prepare(i, rec), imgs))
    assert got == expected


def test_face_check_needs_the_faces_extra():
    assert CHECKS["face"].extra == "faces"
    assert registry.create("face_count").requires == ("face_signals",)


def test_missing_opencv_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    with pytest.raises(MetricUnavailableError) as err:
        F.FaceSignals().check_available()
    assert "pip install 'sdeval[faces]'" in str(err.value)


def test_opencv_without_cascades_names_the_extra(monkeypatch):
    fake = types.SimpleNamespace(__version__="5.0.0", data=types.SimpleNamespace(haarcascades=None))
    monkeypatch.setitem(sys.modules, "cv2", fake)
    with pytest.raises(MetricUnavailableError) as err:
        F.FaceSignals().check_available()
    assert "OpenCV 5" in str(err.value) and "sdeval[faces]" in str(err.value)


def test_portrait_preset_expects_one_reasonable_face():
    policy = build_policy(load_preset("portrait"))
    assert "face" in policy.checks
    rules = {r.metric: r for r in policy.rules}
    assert rules["face_count"].op == "!=" and rules["face_count"].threshold == 1
    assert rules["face_size"].action == rules["face_count"].action == "restore_face"

    def verdict(img: np.ndarray) -> set[str]:
        values = face_metrics(img)
        return {r.metric for r in policy.rules if r.metric in values and not isinstance(values[r.metric], Missing)
                and r.fires(values[r.metric])}

    assert verdict(skdata.astronaut()) == set()
    assert verdict(skdata.coffee()) == {"face_count", "face_size"}
