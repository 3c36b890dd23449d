"""Record a run and check it: the one entry point every command uses (gate, eval, compare, history add).

    record_result("evals.db", "reports/eval-20260101/", settings=HistorySettings(label="nightly"))

reads the result folder's summary.json (and results.jsonl), appends the run to the history in one
write transaction, applies the alert rule against the run's series, stores the alerts that fired and,
when ``settings.notify`` is set and one fired, posts them to the webhook (a failure is a note).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from sdeval.history.alerts import Check, check_run
from sdeval.history.config import HistorySettings
from sdeval.history.notify import NotifyOutcome, alert_message, post
from sdeval.history.queries import insert_alerts, insert_run
from sdeval.history.record import build_record, read_result_folder
from sdeval.history.store import HistoryError, Store, open_store, runs


@dataclass(frozen=True)
class Recorded:
    """What recording a run did: the run, every check, the alerts, notes for the user, the notification."""

    store: str
    run: Mapping[str, Any]
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()
    notification: NotifyOutcome | None = None

    @property
    def alerts(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.fired)

    def as_dict(self) -> dict[str, Any]:
        n = self.notification
        return {"store": self.store, "run": dict(self.run), "alerts": [c.as_dict() for c in self.alerts],
                "checks": [c.as_dict() for c in self.checks], "notes": list(self.notes),
                "notification": None if n is None else {"ok": n.ok, "attempts": n.attempts, "status": n.status,
                                                        "warning": n.warning}}


def record_result(history: str | os.PathLike[str] | Store, result: str | os.PathLike[str] | Mapping[str, Any], *,
                  settings: HistorySettings | None = None, rows: Sequence[Mapping[str, Any]] | None = None,
                  command_line: str | None = None, exit_status: int | None = None,
                  cwd: str | os.PathLike[str] | None = None) -> Recorded:
    """Append ``result`` (a result folder, or a summary dict with its ``rows``) to ``history`` and check it.

    ``settings`` gives the label, tags, per-image rows, GPU cost, alert rule and webhook; its ``url``
    is not used (``history`` is the store). Raises :class:`HistoryError` (exit 2) when the store
    cannot be written; a failed notification is only a note.
    """
    settings = settings or HistorySettings()
    if isinstance(result, Mapping):
        summary: Mapping[str, Any] = result
    else:
        summary, read_rows = read_result_folder(result)
        rows = rows if rows is not None else read_rows
    rec = build_record(summary, rows, label=settings.label, tags=settings.tags, command_line=command_line,
                       exit_status=exit_status, gpu_cost_per_hour=settings.gpu_cost_per_hour,
                       images=settings.images, cwd=cwd)
    own = not isinstance(history, Store)
    store = open_store(history) if own else history
    try:
        try:
            with store.write() as conn:
                prev = conn.execute(sa.select(runs.c.protocol_hash).where(runs.c.label == rec.label)
                                    .order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(1)).scalar()
                run_id = insert_run(conn, rec)
                checks = check_run(conn, run_id, settings.rule)
                insert_alerts(conn, run_id, [_alert_row(c) for c in checks if c.fired])
        except sa.exc.SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            raise HistoryError(f"history {store.name}: the run was not recorded: {str(orig).strip().splitlines()[0]}"
                               ) from exc
        name = store.name
    finally:
        if own:
            store.close()
    run = {"id": run_id, "uid": rec.uid, "label": rec.label, "command": rec.command, "started_at": rec.started_at,
           "host": rec.host, "git_commit": rec.git_commit, "protocol_hash": rec.protocol_hash,
           "out_dir": rec.out_dir, "tags": dict(rec.tags), "exit_status": rec.exit_status}
    notes = _notes(rec.label, rec.protocol_hash, prev, checks, settings)
    recorded = Recorded(name, run, tuple(checks), tuple(notes))
    fired = recorded.alerts
    if fired and settings.notify:
        outcome = post(settings.notify, alert_message(run, [c.as_dict() for c in fired]),
                       timeout=settings.notify_timeout, retries=settings.notify_retries)
        recorded = replace(recorded, notification=outcome,
                           notes=recorded.notes + ((outcome.warning,) if outcome.warning else ()))
    return recorded


@dataclass(frozen=True)
class _AlertRow:
    metric: str
    value: float | None
    baseline: float | None
    threshold: float | None
    spread: float | None
    higher_is_better: bool | None
    message: str


def _alert_row(c: Check) -> _AlertRow:
    return _AlertRow(c.metric, c.value, c.baseline, c.threshold, c.spread, c.higher_is_better, c.reason)


def _notes(label: str, protocol: str, prev: str | None, checks: Sequence[Check],
           settings: HistorySettings) -> list[str]:
    notes = []
    if prev is not None and prev != protocol:
        notes.append(f"the protocol changed since the last '{label}' run ({prev[:8]} -> {protocol[:8]}): a new "
                     "segment starts, and earlier numbers are not compared with these")
    short = [c for c in checks if c.higher_is_better is not None and c.baseline is None and c.value is not None]
    if short:
        n = max(c.earlier for c in short)
        notes.append(f"series '{label}' (protocol {protocol[:8]}) has {n} earlier run(s): no alerts until "
                     f"{settings.rule.min_runs}")
    return notes


def record_folder(history: str | os.PathLike[str], folder: str | os.PathLike[str],
                  settings: HistorySettings | None = None, **kw: Any) -> Recorded:
    """:func:`record_result` for a result folder on disk (``sdeval history add DIR``)."""
    path = Path(folder)
    return record_result(history, path, settings=settings, **kw)
