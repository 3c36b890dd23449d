"""The content-addressed feature cache: values, hits, misses, invalidation, concurrency, damage."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from sdeval.features.cache import CacheInfo, FeatureCache, NullCache, open_feature_cache
from sdeval.metrics.base import Missing
from sdeval.models import cache as mcache
from sdeval.pipeline.cache_plan import CachePlan


def lookup(cache, extractor, records) -> dict:
    """Cached features of ``records`` for ``extractor`` by record index, through the pipeline's one cache path."""
    plan = CachePlan([extractor], cache)
    out = {}
    for i, rec in enumerate(records):
        _, cached = plan.lookup(rec)
        if extractor.id in cached:
            out[i] = cached[extractor.id]
    return out


def store(cache, extractor, records, values) -> int:
    return CachePlan([extractor], cache).store(extractor, records, values)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SDEVAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SDEVAL_OFFLINE", raising=False)
    yield
    mcache.reset_offline()


def sha(i: int) -> str:
    return f"{i:064x}"


def test_default_location_is_under_the_cache_dir(tmp_path: Path) -> None:
    cache = open_feature_cache()
    assert isinstance(cache, FeatureCache) and cache.path == tmp_path / "cache" / "features.sqlite"
    assert isinstance(open_feature_cache(enabled=False), NullCache)


def test_values_round_trip_without_pickle(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "f.sqlite")
    vec = np.linspace(-1, 1, 768, dtype=np.float32)
    mat = np.arange(12, dtype=np.float16).reshape(3, 4)
    values = {sha(1): vec, sha(2): mat, sha(3): {"score": 0.25, "boxes": [[1, 2, 3, 4]], "label": None},
              sha(4): 0.5, sha(5): {"vector": vec, "n_tokens": 80, "truncated": True},
              sha(6): np.float32(2.5), sha(7): float("nan")}
    assert cache.put_many("k", values) == 7
    got = cache.get_many(list(values), "k")
    np.testing.assert_array_equal(got[sha(1)], vec)
    assert got[sha(1)].dtype == np.float32 and got[sha(2)].dtype == np.float16 and got[sha(2)].shape == (3, 4)
    assert got[sha(3)] == {"score": 0.25, "boxes": [[1, 2, 3, 4]], "label": None}
    assert got[sha(4)] == 0.5 and got[sha(6)] == 2.5 and np.isnan(got[sha(7)])
    np.testing.assert_array_equal(got[sha(5)]["vector"], vec)
    assert got[sha(5)]["n_tokens"] == 80 and got[sha(5)]["truncated"] is True
    raw = sqlite3.connect(cache.path).execute("SELECT DISTINCT kind FROM features").fetchall()
    assert {r[0] for r in raw} == {"nd", "json", "bundle"}
    with pytest.raises(TypeError):
        cache.put_many("k", {sha(8): object()})
    with pytest.raises(TypeError):
        cache.put_many("k", {sha(9): np.array([object()])})


def test_hits_misses_and_keys_are_separate(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "f.sqlite")
    cache.put_many("clip_image/A", {sha(i): np.full(4, i, np.float32) for i in range(10)})
    got = cache.get_many([sha(i) for i in range(5, 15)], "clip_image/A")
    assert sorted(got) == [sha(i) for i in range(5, 10)]  # misses are absent
    assert cache.get_many([sha(1)], "clip_image/B") == {}  # another key (other weights) misses
    assert cache.get_many([], "clip_image/A") == {}
    big = cache.get_many([sha(i) for i in range(2000)], "clip_image/A")  # more than one IN chunk
    assert len(big) == 10
    info = cache.info()
    assert isinstance(info, CacheInfo) and info.entries == 10 and info.by_feature == {"clip_image/A": 10}
    assert info.size_bytes > 0
    assert cache.clear("clip_image/B") == 0 and cache.clear() == 10 and cache.info().entries == 0


def test_wal_mode_and_busy_timeout(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "f.sqlite", busy_timeout_s=7)
    cache.put_many("k", {sha(1): 1})
    conn = cache._connect()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 7000


def _writer(path: str, worker: int, rounds: int, per_round: int) -> int:
    cache = FeatureCache(path)
    written = 0
    for r in range(rounds):
        # overlapping keys between workers, fresh ones per worker too
        items = {sha(r * per_round + i): np.full(16, worker, np.float32) for i in range(per_round)}
        items.update({sha(10_000 * (worker + 1) + r * per_round + i): np.full(16, worker, np.float32)
                      for i in range(per_round)})
        written += cache.put_many("shared", items)
        assert len(cache.get_many(list(items), "shared")) == len(items)
    cache.close()
    return written


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "f.sqlite")
    FeatureCache(path).put_many("shared", {sha(0): 0})  # create the schema first, like a prior run
    ctx = multiprocessing.get_context("spawn")
    rounds, per_round = 15, 40
    with ctx.Pool(2) as pool:
        results = pool.starmap(_writer, [(path, 0, rounds, per_round), (path, 1, rounds, per_round)])
    assert results == [rounds * per_round * 2] * 2
    info = FeatureCache(path).info()
    # shared keys once, each worker's own keys once
    assert info.entries == rounds * per_round + 2 * rounds * per_round


def test_concurrent_first_use_creates_schema_once(tmp_path: Path) -> None:
    path = str(tmp_path / "fresh.sqlite")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_writer, [(path, 0, 3, 10), (path, 1, 3, 10)])
    assert results == [60, 60]


def test_corrupt_database_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    path.write_bytes(b"this is not a sqlite database" * 100)
    cache = FeatureCache(path)
    assert cache.get_many([sha(1)], "k") == {}
    assert cache.put_many("k", {sha(1): 1}) == 1
    assert cache.get_many([sha(1)], "k") == {sha(1): 1}
    assert any("corrupt" in p for p in cache.problems)
    assert any(p.name.startswith("f.sqlite.corrupt-") for p in tmp_path.iterdir())


def test_unwritable_cache_degrades_to_misses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FeatureCache(tmp_path / "f.sqlite")
    cache.put_many("k", {sha(1): 1})

    def boom(*a: object, **k: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(cache, "_connect", boom)
    assert cache.get_many([sha(1)], "k") == {}
    assert cache.put_many("k", {sha(2): 2}) == 0
    assert len(cache.problems) == 1 and cache.broken  # one warning: the cache is given up for the run


def test_null_cache_never_stores() -> None:
    cache = NullCache()
    assert cache.put_many("k", {sha(1): 1}) == 0 and cache.get_many([sha(1)], "k") == {}
    assert cache.info().enabled is False and cache.clear() == 0


# -- with the real extractors -----------------------------------------------------------------------

@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[dict]:
    import open_clip  # noqa: F401
    import torch  # noqa: F401
    from clip_tiny_models import save_pt

    from sdeval.features import clip as fclip

    name, pt = save_pt(tmp_path, seed=5)
    yield {"clip_model": name, "clip_pretrained": str(pt), "device": "cpu"}
    fclip.clear_backbones()


def test_second_run_does_no_forward(tmp_path: Path, tiny: dict) -> None:
    from clip_tiny_models import images, record

    from sdeval.features.clip import ClipImage, ClipText, TextEmbedding, forward_counts

    imgs = images(4)
    recs = [record(path=f"{i}.png", sha=sha(100 + i), prompt=p)
            for i, p in enumerate(["a cat", "a dog", "a cat", None])]
    cache = FeatureCache(tmp_path / "f.sqlite")

    def run() -> tuple[list, list]:
        ci, ct = ClipImage(tiny), ClipText(tiny)
        out = []
        for ext, prepare in ((ci, lambda i, r: ci.prepare(imgs[i], r)), (ct, lambda i, r: ct.prepare(None, r))):
            hits = lookup(cache, ext, recs)
            todo = [i for i in range(len(recs)) if i not in hits]
            computed = ext.compute([prepare(i, recs[i]) for i in todo]) if todo else []
            store(cache, ext, [recs[i] for i in todo], computed)
            values = dict(hits)
            values.update(zip(todo, computed))
            out.append([values[i] for i in range(len(recs))])
        return out[0], out[1]

    img1, txt1 = run()
    first = forward_counts()
    from sdeval.features import clip as fclip

    fclip.clear_backbones()  # a new process: nothing memoised, nothing loaded
    img2, txt2 = run()
    assert forward_counts() == {"image_calls": 0, "images_encoded": 0, "text_calls": 0, "texts_encoded": 0}
    assert fclip.loaded_backbones() == []  # the warm run did not even load the model
    assert first["images_encoded"] == 4 and first["texts_encoded"] == 2
    for a, b in zip(img1, img2):
        np.testing.assert_array_equal(a, b)
    assert isinstance(txt2[0], TextEmbedding) and isinstance(txt2[3], Missing)  # no prompt is not cached
    np.testing.assert_array_equal(txt1[2].vector, txt2[2].vector)
    info = cache.info()
    assert info.entries == 4 + 2  # images by file sha256, texts by distinct prompt


def test_cache_is_invalidated_when_weights_change(tmp_path: Path, tiny: dict) -> None:
    from clip_tiny_models import images, record, save_pt

    from sdeval.features.clip import ClipImage

    _, other_pt = save_pt(tmp_path, seed=6)
    recs = [record(sha=sha(7))]
    cache = FeatureCache(tmp_path / "f.sqlite")
    a = ClipImage(tiny)
    store(cache, a, recs, a.compute([a.prepare(images(1)[0], recs[0])]))
    assert set(lookup(cache, ClipImage(tiny), recs)) == {0}
    b = ClipImage({**tiny, "clip_pretrained": str(other_pt)})
    assert lookup(cache, b, recs) == {}  # new weights hash -> new key -> miss
    # no file hash (record not read) -> never cached
    assert lookup(cache, a, [record(sha=None)]) == {}
    assert store(cache, a, [record(sha=None)], [np.ones(32, np.float32)]) == 0
    assert store(cache, a, [record(sha=sha(8))], [Missing("decode failed")]) == 0


def test_text_features_keyed_by_prompt_not_file(tiny: dict) -> None:
    from clip_tiny_models import record

    from sdeval.features.clip import ClipImage, ClipText

    ct, ci = ClipText(tiny), ClipImage(tiny)
    same_file_new_prompt = [record(sha=sha(1), prompt="a cat"), record(sha=sha(1), prompt="a dog")]
    plan = CachePlan([ct, ci], NullCache())
    keys = [plan.content_key(ct, r) for r in same_file_new_prompt]
    assert keys[0] != keys[1] and keys[0].startswith("prompt:")
    assert plan.content_key(ci, same_file_new_prompt[0]) == sha(1)
    assert plan.content_key(ct, record(prompt=None)) is None

