"""Pairing rules: key (prompt + seed) with the file-name fallback, ambiguous keys, nothing dropped."""

from __future__ import annotations

import pytest

from sdeval.compare.pairing import Entry, filename_node, normalise_prompt, pair_arms


def e(i: int, rel: str, prompt: str | None = "a cat", seed: int | None = 1, size=(64, 64), **kw) -> Entry:
    return Entry(index=i, path=f"/x/{rel}", relpath=rel, prompt=prompt, seed=seed, width=size[0],
                 height=size[1], **kw)


def test_key_pairs_normalised_prompts_and_seeds_and_clusters_are_prompts() -> None:
    base = [e(0, "a.png", "A  cat ", 1), e(1, "b.png", "a cat", 2), e(2, "c.png", "a dog", 1)]
    cand = [e(0, "z.png", "a dog", 1), e(1, "y.png", "a CAT", 2), e(2, "x.png", "a cat", 1)]
    p = pair_arms("cand", cand, "base", base)
    assert [(q.base, q.arm, q.rule) for q in p.pairs] == [(0, 2, "key"), (1, 1, "key"), (2, 0, "key")]
    assert p.n_clusters == 2 and not p.unpaired and not p.ambiguous
    assert normalise_prompt("A\u00a0 Cat\n") == "a cat"


def test_unpaired_images_are_listed_with_reasons() -> None:
    base = [e(0, "a.png", seed=1), e(1, "b.png", seed=2), e(2, "bad.png", error="truncated")]
    cand = [e(0, "a.png", seed=1), e(1, "c.png", seed=3)]
    p = pair_arms("cand", cand, "base", base)
    assert len(p.pairs) == 1
    reasons = {(u.arm, u.path.rsplit("/", 1)[-1]): u.reason for u in p.unpaired}
    assert set(reasons) == {("base", "b.png"), ("base", "bad.png"), ("cand", "c.png")}
    assert "could not be read" in reasons[("base", "bad.png")]
    assert "no image with this key in 'cand'" in reasons[("base", "b.png")]
    c = p.counts()
    assert (c["pairs"], c["unpaired_arm"], c["unpaired_baseline"]) == (1, 1, 2)


def test_filename_fallback_when_metadata_is_missing_and_pair_by_filename() -> None:
    base = [e(0, "s/1.png", prompt=None), e(1, "s/2.png", seed=None), e(2, "s/3.png", "p", 9)]
    cand = [e(0, "s/1.png", prompt=None), e(1, "s/2.png", seed=None), e(2, "s/3.png", "q", 9)]
    p = pair_arms("cand", cand, "base", base)
    assert [(q.base, q.rule) for q in p.pairs] == [(0, "filename"), (1, "filename")]
    assert len(p.unpaired) == 2  # 3.png has a key on both sides, and the keys differ
    by_name = pair_arms("cand", cand, "base", base, pair_by="filename")
    assert [q.rule for q in by_name.pairs] == ["filename"] * 3


def test_ambiguous_keys_by_output_node_then_size_then_file_order() -> None:
    # hires fix saved by two SaveImage nodes: ComfyUI_base_00001_.png and ComfyUI_hires_00001_.png
    base = [e(0, "ComfyUI_base_00001_.png"), e(1, "ComfyUI_hires_00001_.png", size=(128, 128))]
    cand = [e(0, "ComfyUI_hires_00002_.png", size=(128, 128)), e(1, "ComfyUI_base_00002_.png")]
    p = pair_arms("cand", cand, "base", base)
    assert [(q.base, q.arm, q.rule) for q in p.pairs] == [(0, 1, "output_node"), (1, 0, "output_node")]
    assert p.ambiguous[0].rule == "output_node" and p.ambiguous[0].pairs == 2

    # no node in the names: sizes tell them apart
    base = [e(0, "a.png"), e(1, "b.png", size=(128, 128))]
    cand = [e(0, "c.png", size=(128, 128)), e(1, "d.png")]
    p = pair_arms("cand", cand, "base", base)
    assert [(q.base, q.arm, q.rule) for q in p.pairs] == [(0, 1, "size"), (1, 0, "size")]

    # nothing tells them apart: file order, the extra one listed
    base = [e(0, "b.png"), e(1, "a.png")]
    cand = [e(0, "y.png"), e(1, "x.png"), e(2, "z.png")]
    p = pair_arms("cand", cand, "base", base)
    assert [(q.base, q.arm, q.rule) for q in p.pairs] == [(0, 0, "file_order"), (1, 1, "file_order")]
    (extra,) = p.unpaired
    assert extra.path.endswith("z.png") and "ambiguous key" in extra.reason and "file order" in extra.reason

    # a graph-derived node label wins over file names
    labels = {"/x/a.png": "9", "/x/b.png": "23", "/x/c.png": "23", "/x/d.png": "9"}
    base = [e(0, "a.png"), e(1, "b.png")]
    cand = [e(0, "c.png"), e(1, "d.png")]
    p = pair_arms("cand", cand, "base", base, output_node=lambda x: labels[x.path])
    assert [(q.base, q.arm, q.rule) for q in p.pairs] == [(0, 1, "output_node"), (1, 0, "output_node")]


def test_filename_node() -> None:
    assert filename_node(e(0, "out/ComfyUI_hires_00012_.png")) == "ComfyUI_hires"
    assert filename_node(e(0, "img_0001.png")) == "img"
    assert filename_node(e(0, "cat.png")) is None


def test_pair_by_none_is_not_pairing() -> None:
    with pytest.raises(ValueError):
        pair_arms("a", [], "b", [], pair_by="none")
