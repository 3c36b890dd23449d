"""Reading and writing the history: insert a run, list, show, series of one value, diff, export, prune."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sdeval.core.errors import UsageError
from sdeval.history.record import RunRecord
from sdeval.history.store import Store, alerts, run_images, run_tags, run_values, runs

#: the columns a run listing shows
RUN_COLUMNS = ("id", "uid", "command", "label", "started_at", "ended_at", "host", "git_commit", "sdeval_version",
               "protocol_hash", "n_images", "exit_status", "passed", "out_dir")


def insert_run(conn: Connection, rec: RunRecord) -> int:
    """One run and its values, tags and image rows, in the caller's transaction; returns its id."""
    run_id = conn.execute(runs.insert().values(
        uid=rec.uid, command=rec.command, command_line=rec.command_line, label=rec.label,
        started_at=rec.started_at, ended_at=rec.ended_at, host=rec.host, git_commit=rec.git_commit,
        sdeval_version=rec.sdeval_version, versions=_dumps(rec.versions), protocol_hash=rec.protocol_hash,
        protocol=_dumps(rec.protocol), n_images=rec.n_images, exit_status=rec.exit_status, passed=rec.passed,
        out_dir=rec.out_dir, tags=_dumps(rec.tags), details=_dumps(rec.details),
    ).returning(runs.c.id)).scalar_one()
    if rec.values:
        conn.execute(run_values.insert(), [
            {"run_id": run_id, "name": v.name, "value": v.value, "lo": v.lo, "hi": v.hi,
             "higher_is_better": v.higher_is_better, "watched": v.watched} for v in rec.values])
    if rec.tags:
        conn.execute(run_tags.insert(), [{"run_id": run_id, "key": k, "value": v} for k, v in rec.tags.items()])
    if rec.images:
        conn.execute(run_images.insert(), [
            {"run_id": run_id, "content_hash": r["content_hash"], "path": r.get("path"), "verdict": r.get("verdict"),
             "error": r.get("error"), "metrics": _dumps(r.get("metrics") or {})} for r in rec.images])
    return int(run_id)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def run_dict(row: Any, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    d = {c: getattr(row, c) for c in RUN_COLUMNS}
    d["tags"] = dict(tags) if tags is not None else (_loads(getattr(row, "tags", None)) or {})
    return d


def list_runs(store: Store, *, label: str | None = None, last: int | None = None,
              tag: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Runs, oldest first (the newest ``last`` of them)."""
    q = sa.select(*[runs.c[c] for c in RUN_COLUMNS], runs.c.tags)
    if label is not None:
        q = q.where(runs.c.label == label)
    for k, v in (tag or {}).items():
        q = q.where(runs.c.id.in_(sa.select(run_tags.c.run_id).where(run_tags.c.key == k, run_tags.c.value == v)))
    q = q.order_by(runs.c.started_at.desc(), runs.c.id.desc())
    if last is not None:
        q = q.limit(last)
    with store.read() as conn:
        rows = conn.execute(q).fetchall()
    return [run_dict(r) for r in reversed(rows)]


def resolve_run(conn: Connection, ref: str | int) -> int:
    """A run id from ``ref``: its number, ``latest``, or a uid prefix (at least 6 characters)."""
    text = str(ref).strip()
    if text == "latest":
        rid = conn.execute(sa.select(runs.c.id).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(1)
                           ).scalar()
    elif text.isdigit():
        rid = conn.execute(sa.select(runs.c.id).where(runs.c.id == int(text))).scalar()
    elif len(text) >= 6 and all(c in "0123456789abcdef" for c in text.lower()):
        found = conn.execute(sa.select(runs.c.id).where(runs.c.uid.like(text.lower() + "%")).limit(2)).fetchall()
        if len(found) > 1:
            raise UsageError(f"run {text!r} is ambiguous: give more of its uid")
        rid = found[0][0] if found else None
    else:
        raise UsageError(f"run {text!r}: give a run id (see 'sdeval history list'), 'latest' or a uid prefix")
    if rid is None:
        raise UsageError(f"no run {text!r} in this history")
    return int(rid)


def show_run(store: Store, ref: str | int) -> dict[str, Any]:
    """One run with its values, tags, details, protocol, alerts and image count."""
    with store.read() as conn:
        rid = resolve_run(conn, ref)
        row = conn.execute(sa.select(runs).where(runs.c.id == rid)).one()
        tags = dict(conn.execute(sa.select(run_tags.c.key, run_tags.c.value).where(run_tags.c.run_id == rid)).all())
        values = conn.execute(sa.select(run_values).where(run_values.c.run_id == rid)
                              .order_by(run_values.c.name)).fetchall()
        fired = conn.execute(sa.select(alerts).where(alerts.c.run_id == rid).order_by(alerts.c.id)).fetchall()
        n_rows = conn.execute(sa.select(sa.func.count()).select_from(run_images)
                              .where(run_images.c.run_id == rid)).scalar_one()
    out = run_dict(row, tags)
    out.update(command_line=row.command_line, versions=_loads(row.versions) or {},
               protocol=_loads(row.protocol) or {}, details=_loads(row.details) or {}, image_rows=int(n_rows),
               values=[{"name": v.name, "value": v.value, "lo": v.lo, "hi": v.hi,
                        "higher_is_better": v.higher_is_better, "watched": bool(v.watched)} for v in values],
               alerts=[alert_dict(a, row) for a in fired])
    return out


def run_images_of(store: Store, ref: str | int) -> list[dict[str, Any]]:
    with store.read() as conn:
        rid = resolve_run(conn, ref)
        rows = conn.execute(sa.select(run_images).where(run_images.c.run_id == rid)
                            .order_by(run_images.c.path)).fetchall()
    return [{"content_hash": r.content_hash, "path": r.path, "verdict": r.verdict, "error": r.error,
             "metrics": _loads(r.metrics) or {}} for r in rows]


class SeriesPoint(NamedTuple):
    """One run's value of one metric (a tuple: a trend makes 10,000 of them)."""

    run_id: int
    uid: str
    started_at: str
    label: str
    protocol_hash: str
    git_commit: str | None
    value: float | None
    lo: float | None
    hi: float | None
    higher_is_better: bool | None


def labels(store: Store) -> list[str]:
    with store.read() as conn:
        return [r[0] for r in conn.execute(sa.select(runs.c.label).distinct().order_by(runs.c.label))]


def series(conn: Connection, metric: str, *, label: str | None = None, protocol_hash: str | None = None,
           before: tuple[str, int] | None = None, last: int | None = None) -> list[SeriesPoint]:
    """The runs' values of ``metric``, oldest first (newest ``last``; only runs before ``before``)."""
    q = (sa.select(runs.c.id, runs.c.uid, runs.c.started_at, runs.c.label, runs.c.protocol_hash,
                   runs.c.git_commit, run_values.c.value, run_values.c.lo, run_values.c.hi,
                   run_values.c.higher_is_better)
         .join(run_values, run_values.c.run_id == runs.c.id).where(run_values.c.name == metric))
    if label is not None:
        q = q.where(runs.c.label == label)
    if protocol_hash is not None:
        q = q.where(runs.c.protocol_hash == protocol_hash)
    if before is not None:
        started, rid = before
        q = q.where(sa.or_(runs.c.started_at < started, sa.and_(runs.c.started_at == started, runs.c.id < rid)))
    q = q.order_by(runs.c.started_at.desc(), runs.c.id.desc())
    if last is not None:
        q = q.limit(last)
    rows = conn.execute(q).fetchall()
    return [SeriesPoint._make(r) for r in reversed(rows)]


def metric_names(store: Store, *, label: str | None = None, watched_only: bool = False) -> list[str]:
    q = sa.select(run_values.c.name).distinct()
    if label is not None:
        q = q.join(runs, runs.c.id == run_values.c.run_id).where(runs.c.label == label)
    if watched_only:
        q = q.where(run_values.c.watched.is_(True))
    with store.read() as conn:
        return sorted(r[0] for r in conn.execute(q))


def diff_runs(store: Store, a: str | int, b: str | int) -> dict[str, Any]:
    """Every value of two runs side by side, with B − A."""
    ra, rb = show_run(store, a), show_run(store, b)
    va = {v["name"]: v for v in ra["values"]}
    vb = {v["name"]: v for v in rb["values"]}
    out = []
    for name in sorted(set(va) | set(vb)):
        x, y = (va.get(name) or {}).get("value"), (vb.get(name) or {}).get("value")
        delta = y - x if x is not None and y is not None else None
        rel = delta / abs(x) if delta is not None and x else None
        hib = (vb.get(name) or va.get(name) or {}).get("higher_is_better")
        change = None
        if delta and hib is not None:
            change = "better" if (delta > 0) == bool(hib) else "worse"
        out.append({"name": name, "a": x, "b": y, "delta": delta, "relative": rel, "change": change})
    tags = {k: [ra["tags"].get(k), rb["tags"].get(k)] for k in sorted(set(ra["tags"]) | set(rb["tags"]))
            if ra["tags"].get(k) != rb["tags"].get(k)}
    return {"a": {k: ra[k] for k in RUN_COLUMNS}, "b": {k: rb[k] for k in RUN_COLUMNS},
            "same_protocol": ra["protocol_hash"] == rb["protocol_hash"], "tags_changed": tags, "values": out}


def export_rows(store: Store, *, label: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Long format, one row per run and value (for ``export --csv``)."""
    q = (sa.select(runs.c.id.label("run"), runs.c.uid, runs.c.started_at, runs.c.label, runs.c.command,
                   runs.c.protocol_hash, runs.c.git_commit, runs.c.host, runs.c.tags, run_values.c.name,
                   run_values.c.value, run_values.c.lo, run_values.c.hi)
         .join(run_values, run_values.c.run_id == runs.c.id)
         .order_by(runs.c.started_at, runs.c.id, run_values.c.name))
    if label is not None:
        q = q.where(runs.c.label == label)
    with store.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    columns = ["run", "uid", "started_at", "label", "command", "protocol_hash", "git_commit", "host", "tags",
               "name", "value", "lo", "hi"]
    return rows, columns


def prune(store: Store, *, keep: int | None = None, before: str | None = None,
          label: str | None = None) -> dict[str, Any]:
    """Delete runs: all but the newest ``keep`` of each label, and/or those started before ``before``."""
    if keep is None and before is None:
        raise UsageError("history prune: give --keep N and/or --before DATE")
    if keep is not None and keep < 0:
        raise UsageError("--keep must be >= 0")
    cutoff = None
    if before is not None:
        cutoff = _parse_date(before)
    with store.write() as conn:
        q = sa.select(runs.c.id, runs.c.label, runs.c.started_at).order_by(runs.c.label, runs.c.started_at.desc(),
                                                                          runs.c.id.desc())
        if label is not None:
            q = q.where(runs.c.label == label)
        doomed: list[int] = []
        seen: dict[str, int] = {}
        for rid, lab, started in conn.execute(q):
            seen[lab] = seen.get(lab, 0) + 1
            if (keep is not None and seen[lab] > keep) or (cutoff is not None and started < cutoff):
                doomed.append(rid)
        for chunk in _chunks(doomed, 500):
            for table in (alerts, run_images, run_tags, run_values):
                conn.execute(table.delete().where(table.c.run_id.in_(chunk)))
            conn.execute(runs.delete().where(runs.c.id.in_(chunk)))
    return {"deleted": len(doomed), "kept_per_label": keep, "before": cutoff}


def _parse_date(text: str) -> str:
    from sdeval.history.record import iso

    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise UsageError(f"--before {text!r}: not a date (YYYY-MM-DD or an ISO 8601 time)") from exc
    return iso(t if t.tzinfo else t.replace(tzinfo=timezone.utc))


def _chunks(items: Sequence[int], n: int) -> Iterable[list[int]]:
    for i in range(0, len(items), n):
        yield list(items[i:i + n])


def insert_alerts(conn: Connection, run_id: int, fired: Sequence[Any]) -> None:
    if fired:
        conn.execute(alerts.insert(), [
            {"run_id": run_id, "metric": a.metric, "value": a.value, "baseline": a.baseline, "threshold": a.threshold,
             "spread": a.spread, "higher_is_better": a.higher_is_better, "message": a.message} for a in fired])


def alert_dict(a: Any, run: Any) -> dict[str, Any]:
    return {"run": run.id, "uid": run.uid, "label": run.label, "started_at": run.started_at, "metric": a.metric,
            "value": a.value, "baseline": a.baseline, "threshold": a.threshold, "spread": a.spread,
            "higher_is_better": a.higher_is_better, "message": a.message}


def list_alerts(store: Store, *, label: str | None = None, last: int | None = None) -> list[dict[str, Any]]:
    """Recorded alerts, newest run first."""
    q = (sa.select(alerts, runs.c.uid, runs.c.label, runs.c.started_at)
         .join(runs, runs.c.id == alerts.c.run_id).order_by(runs.c.started_at.desc(), runs.c.id.desc(), alerts.c.id))
    if label is not None:
        q = q.where(runs.c.label == label)
    with store.read() as conn:
        rows = conn.execute(q).fetchall()
    out = [{"run": r.run_id, "uid": r.uid, "label": r.label, "started_at": r.started_at, "metric": r.metric,
            "value": r.value, "baseline": r.baseline, "threshold": r.threshold, "spread": r.spread,
            "higher_is_better": r.higher_is_better, "message": r.message} for r in rows]
    if last is not None:
        keep_runs = list(dict.fromkeys(a["run"] for a in out))[:last]
        out = [a for a in out if a["run"] in keep_runs]
    return out
