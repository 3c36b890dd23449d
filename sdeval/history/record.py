"""What a run records: read from its result folder (``summary.json``, ``results.jsonl``), so every
command that writes a result folder (gate, eval, compare) is recorded the same way, and an old
folder can be recorded later (``sdeval history add DIR``).

Values are named flatly: a set metric by its name (``fid``), a per-image metric's mean by its name
(``clip_score``, with a 95 % interval of the mean) and its distribution as ``clip_score.p10`` /
``.p50`` / ``.p90`` / ``.min`` / ``.max``; ``pass_rate``, ``error_rate`` and ``nsfw_rate`` with Wilson
intervals, ``verdict.<v>`` counts, ``images_per_second``, ``regen.*`` figures, and for compare
``delta.<metric>`` (``delta.<arm>.<metric>`` with several arms). Alerts watch only the values marked
``watched`` (means, set values, rates, deltas), not quantiles or timings, which are shown but too
noisy or too redundant to alert on.

A command that wants other numbers recorded adds ``"history_values": [{"name", "value", "lo", "hi",
"higher_is_better", "watched"}]`` to its summary.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from sdeval.core.errors import InputError

#: the parts of a protocol that change numbers (package versions and run settings do not start a segment)
_PROTOCOL_KEYS = ("metrics", "features", "set_metrics", "decode")
#: feature-protocol keys that describe a check's status, not how the numbers are made
_STATUS_KEYS = ("weights_check",)
_Z975 = 1.959963984540054
#: two-sided 95 % Student t for 1 and 2 degrees of freedom (Cornish–Fisher is good from 3 on)
_T975_SMALL = {1: 12.706204736, 2: 4.302652730}


@dataclass(frozen=True)
class Value:
    """One recorded number, with its interval where it has one."""

    name: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    higher_is_better: bool | None = None
    watched: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "lo": self.lo, "hi": self.hi,
                "higher_is_better": self.higher_is_better, "watched": self.watched}


@dataclass(frozen=True)
class RunRecord:
    """Everything one run puts in the history."""

    uid: str
    command: str
    label: str
    started_at: str
    ended_at: str | None
    protocol_hash: str
    protocol: Mapping[str, Any]
    values: tuple[Value, ...]
    command_line: str | None = None
    host: str | None = None
    git_commit: str | None = None
    sdeval_version: str | None = None
    versions: Mapping[str, Any] = field(default_factory=dict)
    n_images: int | None = None
    exit_status: int | None = None
    passed: bool | None = None
    out_dir: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    images: tuple[Mapping[str, Any], ...] = ()


def read_result_folder(path: str | os.PathLike[str], *, rows: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """(summary, rows) of a result folder; rows is None without ``results.jsonl``."""
    folder = Path(path)
    if not (folder / "summary.json").exists() and (folder / "compare.json").is_file():
        return _compare_summary(folder), None
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{folder} is not a result folder (no summary.json or compare.json)") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {folder / 'summary.json'}: {exc}") from exc
    if not isinstance(summary, dict):
        raise InputError(f"{folder / 'summary.json'} is not a JSON object")
    summary.setdefault("out_dir", str(folder))
    if not rows:
        return summary, None
    jsonl = folder / "results.jsonl"
    if not jsonl.is_file():
        return summary, None
    out = []
    with jsonl.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
    return summary, out


def _compare_summary(folder: Path) -> dict[str, Any]:
    """A compare folder's ``compare.json`` in the summary shape a run records: each (arm, metric)
    decision becomes ``comparisons`` (its delta is oriented, positive = better, so higher is better)."""
    try:
        data = json.loads((folder / "compare.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {folder / 'compare.json'}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{folder / 'compare.json'} is not a JSON object")
    rows = [r for r in data.get("metrics") or () if isinstance(r, Mapping)]
    verdict = data.get("verdict") if isinstance(data.get("verdict"), Mapping) else {}
    return {
        "command": "compare", "started_at": data.get("started_at"), "timing": data.get("timing") or {},
        "protocol": data.get("protocol") or {}, "reference": data.get("reference") or {},
        "images": (data.get("timing") or {}).get("images"), "out_dir": str(folder),
        "passed": not verdict.get("failed", False),
        "verdict": {"reasons": list(verdict.get("reasons") or ())},
        "comparisons": [{"metric": r.get("metric"), "arm": r.get("arm"), "delta": r.get("delta"),
                         "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"), "decision": r.get("decision"),
                         "test": r.get("test"), "p_value": r.get("p_adjusted"), "higher_is_better": True}
                        for r in rows],
    }


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """HEAD of the git checkout holding ``cwd`` (None outside one).

    Read from the repository's files (HEAD, the ref, packed-refs; worktrees through their ``gitdir``
    and ``commondir``): a ``git`` process costs more than recording the rest of the run. Anything
    unusual falls back to ``git rev-parse HEAD``.
    """
    try:
        found = _read_head(Path(cwd or os.getcwd()).absolute())
    except (OSError, ValueError):
        found = ""
    if found is None or (found and _is_sha(found)):
        return found
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and _is_sha(commit) else None


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _read_head(start: Path) -> str | None:
    """The commit HEAD names; None when no .git is above ``start``; "" when git must be asked."""
    for folder in (start, *start.parents):
        dotgit = folder / ".git"
        if dotgit.is_dir():
            gitdir = dotgit
            break
        if dotgit.is_file():
            text = dotgit.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir:"):
                return ""
            gitdir = (folder / text[len("gitdir:"):].strip()).resolve()
            break
    else:
        return None
    head = (gitdir / "HEAD").read_text(encoding="utf-8").strip()
    if not head.startswith("ref:"):
        return head
    ref = head[len("ref:"):].strip()
    common = gitdir
    if (gitdir / "commondir").is_file():
        common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for base in (gitdir, common):
        path = base / ref
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            parts = line.split(" ", 1)
            if len(parts) == 2 and parts[1].strip() == ref:
                return parts[0]
    return ""


def protocol_key(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """What makes numbers comparable: metric and feature versions, weights, preprocessing, the reference,
    the image size class and (with set metrics) the N class. Its hash names the series segment."""
    protocol = summary.get("protocol") or {}
    key: dict[str, Any] = {"command": summary.get("command")}
    for k in _PROTOCOL_KEYS:
        part = protocol.get(k)
        if k == "features" and isinstance(part, Mapping):
            part = {fid: {kk: vv for kk, vv in (spec or {}).items() if kk not in _STATUS_KEYS}
                    for fid, spec in part.items()}
        if part:
            key[k] = part
    reference = summary.get("reference") or {}
    if reference.get("kind"):
        key["reference"] = {k: v for k, v in reference.items() if k in ("kind", "name", "path", "sha256", "hash")}
    if protocol.get("set_metrics"):
        key["n_class"] = n_class(int(summary.get("images") or 0))
    size = size_class(rows)
    if size is not None:
        key["size_class"] = size
    return key


def n_class(n: int) -> str:
    """FID and KID move with N: runs are compared within a power-of-two band of N."""
    if n <= 0:
        return "0"
    low = 1 << (n.bit_length() - 1)
    return f"{low}-{2 * low - 1}"


def size_class(rows: Sequence[Mapping[str, Any]] | None) -> int | None:
    """The most common short side of the readable images, to the nearest 64 px."""
    if not rows:
        return None
    counts: dict[int, int] = {}
    for r in rows:
        w, h = r.get("width"), r.get("height")
        if isinstance(w, int) and isinstance(h, int) and r.get("error") is None:
            side = int(round(min(w, h) / 64.0)) * 64
            counts[side] = counts.get(side, 0) + 1
    return max(sorted(counts), key=lambda s: counts[s]) if counts else None


def protocol_hash(key: Mapping[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _quantile(sorted_vals: Sequence[float], q: float) -> float:
    pos = (len(sorted_vals) - 1) * q
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def t975(df: int) -> float:
    """Two-sided 95 % Student t quantile (Cornish–Fisher expansion; exact table for df 1, 2)."""
    if df in _T975_SMALL:
        return _T975_SMALL[df]
    z = _Z975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = t975(n - 1) * math.sqrt(var / n)
    return mean, mean - half, mean + half


def wilson(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    """k/n with its 95 % Wilson score interval."""
    if n <= 0:
        return None, None, None
    p = k / n
    z2 = _Z975 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z975 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _directions(summary: Mapping[str, Any]) -> dict[str, bool | None]:
    protocol = summary.get("protocol") or {}
    out: dict[str, bool | None] = {}
    for part in ("metrics", "set_metrics"):
        for name, spec in (protocol.get(part) or {}).items():
            if isinstance(spec, Mapping) and "higher_is_better" in spec:
                out[name] = spec["higher_is_better"]
    return out


def _direction(name: str, known: Mapping[str, bool | None]) -> bool | None:
    if name in known:
        return known[name]
    try:
        from sdeval.metrics import registry

        return registry.get_class(registry.resolve(name)).higher_is_better
    except Exception:  # noqa: BLE001 - a metric this sdeval does not know: tracked, never alerted on
        return None


def _interval_of(entry: Mapping[str, Any]) -> tuple[float | None, float | None]:
    for lo_key, hi_key in (("ci_low", "ci_high"), ("lo", "hi"), ("low", "high")):
        if lo_key in entry and hi_key in entry:
            return _number(entry[lo_key]), _number(entry[hi_key])
    for key in ("ci", "interval"):
        ci = entry.get(key)
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            return _number(ci[0]), _number(ci[1])
        if isinstance(ci, Mapping):
            return _interval_of(ci)
    return None, None


def summary_values(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] | None = None, *,
                   gpu_cost_per_hour: float | None = None) -> list[Value]:
    """Every number of a run worth a trend (see the module docstring for the names)."""
    known = _directions(summary)
    out: dict[str, Value] = {}

    def put(v: Value) -> None:
        if v.name not in out:
            out[v.name] = v

    for name, entry in (summary.get("set_metrics") or {}).items():
        if isinstance(entry, Mapping):
            lo, hi = _interval_of(entry)
            put(Value(name, _number(entry.get("value")), lo, hi, _direction(name, known), watched=True))
    per_image = _per_image_metrics(summary)
    good = [r for r in rows if r.get("error") is None] if rows is not None else None
    for name in per_image:
        hib = _direction(name, known)
        vals = sorted(v for v in (_number(r.get(name)) for r in good) if v is not None) if good is not None else None
        if vals:
            mean, lo, hi = mean_interval(vals)
            put(Value(name, mean, lo, hi, hib, watched=True))
            for q in (0.1, 0.5, 0.9):
                put(Value(f"{name}.p{int(q * 100)}", _quantile(vals, q), higher_is_better=hib))
            put(Value(f"{name}.min", vals[0], higher_is_better=hib))
            put(Value(f"{name}.max", vals[-1], higher_is_better=hib))
        else:
            d = (summary.get("metrics") or {}).get(name) or {}
            if _number(d.get("mean")) is not None:
                put(Value(name, _number(d.get("mean")), higher_is_better=hib, watched=True))
                for key, suffix in (("median", "p50"), ("min", "min"), ("max", "max")):
                    if _number(d.get(key)) is not None:
                        put(Value(f"{name}.{suffix}", _number(d[key]), higher_is_better=hib))
    _verdict_values(summary, good, put)
    timing = summary.get("timing") or {}
    if _number(timing.get("images_per_second")) is not None:
        put(Value("images_per_second", _number(timing["images_per_second"]), higher_is_better=True))
    if _number(timing.get("seconds")) is not None:
        put(Value("seconds", _number(timing["seconds"]), higher_is_better=False))
    _regeneration_values(summary.get("regeneration") or {}, gpu_cost_per_hour, put)
    _compare_values(summary, known, put)
    for entry in summary.get("history_values") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            put(Value(entry["name"], _number(entry.get("value")), _number(entry.get("lo")), _number(entry.get("hi")),
                      entry.get("higher_is_better"), bool(entry.get("watched", True))))
    return list(out.values())


def _per_image_metrics(summary: Mapping[str, Any]) -> list[str]:
    """Per-image metrics: the summary's ``metrics`` table (every command writes one per judged metric)."""
    metrics = summary.get("metrics")
    return [name for name, d in metrics.items() if isinstance(d, Mapping)] if isinstance(metrics, Mapping) else []


def _verdict_values(summary: Mapping[str, Any], good: Sequence[Mapping[str, Any]] | None, put: Any) -> None:
    images = summary.get("images")
    counts = summary.get("counts") or (summary.get("verdict") or {}).get("counts")
    if isinstance(images, int) and images > 0:
        errors = counts.get("error") if isinstance(counts, Mapping) else summary.get("errors")
        if isinstance(errors, int):
            p, lo, hi = wilson(errors, images)
            put(Value("error_rate", p, lo, hi, higher_is_better=False, watched=True))
        if isinstance(counts, Mapping):
            p, lo, hi = wilson(int(counts.get("pass", 0)), images)
            put(Value("pass_rate", p, lo, hi, higher_is_better=True, watched=True))
            for verdict, n in counts.items():
                put(Value(f"verdict.{verdict}", float(n), higher_is_better=None))
    if good:
        threshold = _nsfw_threshold(summary)
        scored = [v for v in (_number(r.get("nsfw")) for r in good) if v is not None]
        if scored:
            p, lo, hi = wilson(sum(1 for v in scored if v > threshold), len(scored))
            put(Value("nsfw_rate", p, lo, hi, higher_is_better=False, watched=True))


def _nsfw_threshold(summary: Mapping[str, Any]) -> float:
    """The policy's block threshold on nsfw, else open_nsfw's 0.5."""
    for rule in ((summary.get("policy") or {}).get("rules") or ()):
        if isinstance(rule, Mapping) and rule.get("metric") == "nsfw" and rule.get("op") in (">", ">="):
            t = _number(rule.get("threshold"))
            if t is not None:
                return t
    return 0.5


def _regeneration_values(regen: Mapping[str, Any], gpu_cost_per_hour: float | None, put: Any) -> None:
    if not regen.get("enabled") or regen.get("dry_run"):
        return
    if _number(regen.get("acceptance_rate")) is not None:
        put(Value("regen.acceptance_rate", _number(regen["acceptance_rate"]), higher_is_better=True, watched=True))
    if _number(regen.get("attempts_per_accepted")) is not None:
        put(Value("regen.attempts_per_accepted", _number(regen["attempts_per_accepted"]), higher_is_better=False,
                  watched=True))
    accepted = regen.get("accepted") or 0
    gpu_seconds = _number(regen.get("execution_seconds"))
    if gpu_seconds is None:
        gpu_seconds = _number(regen.get("generation_seconds"))
    if accepted and gpu_seconds is not None:
        put(Value("regen.seconds_per_accepted", gpu_seconds / accepted, higher_is_better=False))
        if gpu_cost_per_hour is not None:
            put(Value("regen.cost_per_accepted", gpu_cost_per_hour * gpu_seconds / 3600.0 / accepted,
                      higher_is_better=False))


def _compare_values(summary: Mapping[str, Any], known: Mapping[str, bool | None], put: Any) -> None:
    """``delta.<metric>`` from a compare summary's ``comparisons`` (list of {metric, delta, ci, decision,
    arm?, higher_is_better?})."""
    comparisons = summary.get("comparisons")
    if isinstance(comparisons, Mapping):
        comparisons = [{"metric": k, **v} for k, v in comparisons.items() if isinstance(v, Mapping)]
    for c in comparisons or ():
        if not isinstance(c, Mapping) or not isinstance(c.get("metric"), str):
            continue
        delta = c.get("delta", c.get("difference"))
        name = f"delta.{c['arm']}.{c['metric']}" if c.get("arm") else f"delta.{c['metric']}"
        lo, hi = _interval_of(c)
        hib = c.get("higher_is_better")
        put(Value(name, _number(delta), lo, hi, hib if hib is not None else _direction(c["metric"], known),
                  watched=True))


def _details(summary: Mapping[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for key in ("top_reasons", "failures", "warnings"):
        if summary.get(key):
            details[key] = summary[key]
    policy = summary.get("policy")
    if policy:
        details["policy_hash"] = protocol_hash({"rules": policy.get("rules"),
                                                "min_pass_rate": policy.get("min_pass_rate")})
    decisions = [{k: c.get(k) for k in ("metric", "arm", "decision", "test", "p_value") if k in c}
                 for c in (summary.get("comparisons") or ()) if isinstance(c, Mapping)]
    if decisions:
        details["decisions"] = decisions
    if summary.get("verdict") and isinstance(summary["verdict"], Mapping):
        details["verdict_reasons"] = summary["verdict"].get("reasons")
    return details


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def iso(t: datetime) -> str:
    """The one text form of a time in the store: UTC, microseconds, sortable."""
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def build_record(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] | None = None, *,
                 label: str | None = None, tags: Mapping[str, str] | None = None,
                 command_line: str | None = None, exit_status: int | None = None,
                 gpu_cost_per_hour: float | None = None, images: bool = False,
                 cwd: str | os.PathLike[str] | None = None, now: datetime | None = None) -> RunRecord:
    """A :class:`RunRecord` from a result folder's summary (and rows, for intervals and per-image rows)."""
    command = str(summary.get("command") or "run")
    now = now or datetime.now(timezone.utc)
    started = _parse_time(summary.get("started_at"))
    seconds = _number((summary.get("timing") or {}).get("seconds"))
    # the summary's start has whole seconds: two runs in one second keep their order by id
    ended = started + timedelta(seconds=seconds) if started is not None and seconds is not None else now
    key = protocol_key(summary, rows)
    versions = (summary.get("protocol") or {}).get("versions") or {}
    passed = summary.get("passed")
    image_rows: tuple[Mapping[str, Any], ...] = ()
    if images and rows:
        image_rows = tuple(_image_rows(rows, summary))
    return RunRecord(
        uid=uuid.uuid4().hex, command=command, label=label or command, command_line=command_line,
        started_at=iso(started or now), ended_at=iso(ended), protocol_hash=protocol_hash(key), protocol=key,
        values=tuple(summary_values(summary, rows, gpu_cost_per_hour=gpu_cost_per_hour)),
        host=socket.gethostname(), git_commit=git_commit(cwd), sdeval_version=versions.get("sdeval"),
        versions=versions, n_images=summary.get("images") if isinstance(summary.get("images"), int) else None,
        exit_status=exit_status if exit_status is not None else (None if passed is None else 0 if passed else 1),
        passed=passed if isinstance(passed, bool) else None, out_dir=summary.get("out_dir"),
        tags=dict(tags or {}), details=_details(summary), images=image_rows)


def _image_rows(rows: Iterable[Mapping[str, Any]], summary: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    names = _per_image_metrics(summary)
    seen: set[str] = set()
    for r in rows:
        h = r.get("sha256")
        if not isinstance(h, str) or h in seen:  # keyed by content: a duplicate file is one row
            continue
        seen.add(h)
        yield {"content_hash": h, "path": r.get("path"), "verdict": r.get("verdict"), "error": r.get("error"),
               "metrics": {n: _number(r.get(n)) for n in names if n in r}}
