"""Pairing the images of two arms (DESIGN.md, Compare).

Two images of different arms are a *pair* when they share a key: by default the normalised prompt
and the seed (from metadata or a manifest), falling back to the image's file name relative to its
arm's input when either is unknown (``--pair-by key``); ``--pair-by filename`` uses the relative
file name only. The pairs of one prompt form a *cluster* (every resampling resamples clusters).

Nothing is dropped silently: an image without a partner is *unpaired* with the reason, and a key
held by several images of one arm (the stages of a hires-fix workflow saved by several SaveImage
nodes, a batch of one seed) is *ambiguous*: its images are paired by the first rule that tells them
apart on both sides — the same output node, then the same size, then file order — and the rule is
reported for the key and for each pair.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

PAIR_BY = ("key", "filename", "none")
#: how ambiguous keys are paired, in the order tried
AMBIGUITY_RULES = ("output_node", "size", "file_order")


@dataclass(frozen=True)
class Entry:
    """What pairing reads of one image of an arm (``index``: its position in the arm's rows)."""

    index: int
    path: str
    relpath: str
    prompt: str | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    group: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Pair:
    key: str
    cluster: str
    base: int
    arm: int
    #: how the two were matched: key, filename, or an ambiguity rule (output_node, size, file_order)
    rule: str


@dataclass(frozen=True)
class Unpaired:
    arm: str
    path: str
    key: str | None
    reason: str


@dataclass(frozen=True)
class AmbiguousKey:
    key: str
    arm_images: int
    base_images: int
    rule: str
    pairs: int


@dataclass(frozen=True)
class ArmPairing:
    """One arm against the baseline: its pairs, what stayed unpaired and why, the ambiguous keys."""

    arm: str
    baseline: str
    pair_by: str
    pairs: tuple[Pair, ...]
    unpaired: tuple[Unpaired, ...]
    ambiguous: tuple[AmbiguousKey, ...]
    arm_images: int
    base_images: int

    @property
    def n_clusters(self) -> int:
        return len({p.cluster for p in self.pairs})

    def counts(self) -> dict[str, Any]:
        rules: dict[str, int] = {}
        for p in self.pairs:
            rules[p.rule] = rules.get(p.rule, 0) + 1
        return {"arm": self.arm, "baseline": self.baseline, "pair_by": self.pair_by,
                "arm_images": self.arm_images, "baseline_images": self.base_images,
                "pairs": len(self.pairs), "clusters": self.n_clusters,
                "unpaired_arm": sum(1 for u in self.unpaired if u.arm == self.arm),
                "unpaired_baseline": sum(1 for u in self.unpaired if u.arm == self.baseline),
                "ambiguous_keys": len(self.ambiguous), "rules": rules,
                "ambiguous": [a.__dict__ for a in self.ambiguous]}


def normalise_prompt(prompt: str) -> str:
    """NFKC, case-folded, runs of white space as one space: ``"A  cat "`` and ``"a cat"`` pair."""
    return " ".join(unicodedata.normalize("NFKC", prompt).split()).casefold()


def key_of(entry: Entry, pair_by: str) -> tuple[str, str]:
    """(pairing key, how it was made: ``key`` or ``filename``)."""
    if pair_by == "key" and entry.prompt is not None and entry.seed is not None:
        return f"seed={entry.seed} prompt={normalise_prompt(entry.prompt)}", "key"
    return f"file={entry.relpath}", "filename"


def cluster_of(entry: Entry, key: str) -> str:
    """The prompt cluster of a pair (from the baseline image): manifest group, else prompt, else key."""
    if entry.group:
        return f"group={entry.group}"
    if entry.prompt is not None:
        return f"prompt={normalise_prompt(entry.prompt)}"
    return key


_COUNTER = re.compile(r"^(?P<prefix>.*?)_?\d{4,}_?$")


def filename_node(entry: Entry) -> str | None:
    """The saving node as the file name tells it: ComfyUI names files ``PREFIX_00001_.png``."""
    stem = entry.relpath.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    m = _COUNTER.match(stem)
    return m.group("prefix") if m and m.group("prefix") else None


def pair_arms(arm: str, arm_entries: Sequence[Entry], baseline: str, base_entries: Sequence[Entry], *,
              pair_by: str = "key", output_node: Callable[[Entry], str | None] | None = None) -> ArmPairing:
    """Pair ``arm``'s images with the baseline's (see the module docstring for the rules).

    ``output_node`` names the node that saved an image (None when unknown); it is only asked for
    the images of ambiguous keys.
    """
    if pair_by not in PAIR_BY or pair_by == "none":
        raise ValueError(f"pair_by must be key or filename, got {pair_by!r}")
    unpaired: list[Unpaired] = []
    sides: list[dict[str, list[Entry]]] = []
    how: dict[str, str] = {}
    for name, entries in ((baseline, base_entries), (arm, arm_entries)):
        keyed: dict[str, list[Entry]] = {}
        for e in entries:
            if e.error is not None:
                unpaired.append(Unpaired(name, e.path, None, f"could not be read: {e.error}"))
                continue
            key, made = key_of(e, pair_by)
            how.setdefault(key, made)
            keyed.setdefault(key, []).append(e)
        sides.append(keyed)
    base_by, arm_by = sides
    pairs: list[Pair] = []
    ambiguous: list[AmbiguousKey] = []
    for key in sorted(set(base_by) | set(arm_by)):
        b, a = base_by.get(key, []), arm_by.get(key, [])
        if not a or not b:
            missing, present, entries = (arm, baseline, b) if not a else (baseline, arm, a)
            for e in entries:
                unpaired.append(Unpaired(present, e.path, key, f"no image with this key in '{missing}'"))
            continue
        if len(a) == 1 and len(b) == 1:
            pairs.append(Pair(key, cluster_of(b[0], key), b[0].index, a[0].index, how[key]))
            continue
        rule, matched, left = _resolve(b, a, output_node)
        for eb, ea in matched:
            pairs.append(Pair(key, cluster_of(eb, key), eb.index, ea.index, rule))
        for side, e in left:
            owner, other = (arm, baseline) if side == "arm" else (baseline, arm)
            unpaired.append(Unpaired(owner, e.path, key,
                                     f"ambiguous key ({len(a)} image(s) in '{arm}', {len(b)} in '{baseline}'): "
                                     f"no partner by {rule.replace('_', ' ')} in '{other}'"))
        ambiguous.append(AmbiguousKey(key, len(a), len(b), rule, len(matched)))
    pairs.sort(key=lambda p: (p.base, p.arm))
    return ArmPairing(arm=arm, baseline=baseline, pair_by=pair_by, pairs=tuple(pairs), unpaired=tuple(unpaired),
                      ambiguous=tuple(ambiguous), arm_images=len(arm_entries), base_images=len(base_entries))


def _resolve(base: Sequence[Entry], arm: Sequence[Entry], output_node: Callable[[Entry], str | None] | None
             ) -> tuple[str, list[tuple[Entry, Entry]], list[tuple[str, Entry]]]:
    """(rule, matched (base, arm) images, left over ("base"|"arm", image)) for one ambiguous key."""
    labelers: list[tuple[str, Callable[[Entry], Any]]] = []
    if output_node is not None:
        labelers.append(("output_node", output_node))
    labelers.append(("output_node", filename_node))
    labelers.append(("size", lambda e: (e.width, e.height) if e.width and e.height else None))
    for rule, label in labelers:
        lb, la = [label(e) for e in base], [label(e) for e in arm]
        if None in lb or None in la or len(set(lb)) < len(lb) or len(set(la)) < len(la):
            continue
        by_label = dict(zip(la, arm))
        if not set(lb) & set(by_label):  # labels that never meet tell nothing
            continue
        matched = [(eb, by_label[x]) for x, eb in zip(lb, base) if x in by_label]
        used = {id(ea) for _, ea in matched}
        left = [("base", eb) for x, eb in zip(lb, base) if x not in by_label]
        left += [("arm", ea) for ea in arm if id(ea) not in used]
        return rule, matched, left
    sb, sa = sorted(base, key=lambda e: e.relpath), sorted(arm, key=lambda e: e.relpath)
    n = min(len(sb), len(sa))
    left = [("base", e) for e in sb[n:]] + [("arm", e) for e in sa[n:]]
    return "file_order", list(zip(sb[:n], sa[:n])), left


def entries_from_rows(rows: Sequence[Mapping[str, Any]], relpaths: Sequence[str]) -> list[Entry]:
    """Pairing's view of an arm's result rows (aligned with ``relpaths``)."""
    out = []
    for i, (r, rel) in enumerate(zip(rows, relpaths)):
        seed = r.get("seed")
        out.append(Entry(index=i, path=str(r["path"]), relpath=rel, prompt=r.get("prompt"),
                         seed=int(seed) if seed is not None else None, width=r.get("width"),
                         height=r.get("height"), group=r.get("group"), error=r.get("error")))
    return out


@dataclass(frozen=True)
class PairingSummary:
    """Every arm's pairing against the baseline, for compare.json."""

    pair_by: str
    arms: tuple[ArmPairing, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"pair_by": self.pair_by, "rules_order": list(AMBIGUITY_RULES),
                "arms": [a.counts() for a in self.arms]}
