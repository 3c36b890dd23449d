"""Where the history is and how a run is recorded: ``--history`` and friends, ``SDEVAL_HISTORY``, and
``[tool.sdeval.history]`` in ./pyproject.toml (or ``[history]`` in ./sdeval.toml). Flags win over the
environment, the environment over the file. Unknown keys in the file are an error (exit 2), as in a policy.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from sdeval.core.config import TomlSource, project_table
from sdeval.core.errors import UsageError
from sdeval.history.alerts import DEFAULT_SPREAD_K, DEFAULT_WINDOW, AlertRule

ENV = "SDEVAL_HISTORY"
#: keys of [tool.sdeval.history]
KEYS = ("url", "label", "tags", "images", "gpu_cost_per_hour", "window", "spread_k", "margins", "notify",
        "alert_on_regression", "notify_timeout", "notify_retries")


@dataclass(frozen=True)
class HistorySettings:
    """How a run is recorded and checked. ``url`` None: the run is not recorded."""

    url: str | None = None
    label: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    images: bool = False
    gpu_cost_per_hour: float | None = None
    window: int = DEFAULT_WINDOW
    spread_k: float = DEFAULT_SPREAD_K
    margins: Mapping[str, float] = field(default_factory=dict)
    notify: str | None = None
    alert_on_regression: bool = False
    notify_timeout: float = 10.0
    notify_retries: int = 2
    #: where the settings came from, for messages
    source: str = "defaults"

    @property
    def rule(self) -> AlertRule:
        return AlertRule(window=self.window, k=self.spread_k, margins=dict(self.margins))


def config_source(cwd: Path | None = None) -> TomlSource | None:
    """``[history]`` of ./sdeval.toml, else ``[tool.sdeval.history]`` of ./pyproject.toml, else None."""
    return project_table("history", cwd)


def parse_tags(items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--tag``) as a dict; a key given twice keeps the last value."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--tag {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _settings_from_table(src: TomlSource) -> dict[str, Any]:
    data = src.data
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise src.error(f"unknown key(s) in [{src.table}]: {', '.join(unknown)} (known: {', '.join(KEYS)})",
                        key=unknown[0])
    out: dict[str, Any] = {}

    def need(key: str, kinds: tuple[type, ...], what: str) -> Any:
        v = data[key]
        if not isinstance(v, kinds) or isinstance(v, bool) and bool not in kinds:
            raise src.error(f"{key} must be {what}, not {v!r}", key=key)
        return v

    if "url" in data:
        out["url"] = need("url", (str,), "a path or a URL")
    if "label" in data:
        out["label"] = need("label", (str,), "text")
    if "notify" in data:
        out["notify"] = need("notify", (str,), "a webhook URL")
    if "tags" in data:
        tags = need("tags", (dict,), "a table of KEY = \"VALUE\"")
        out["tags"] = {str(k): str(v) for k, v in tags.items()}
    if "margins" in data:
        margins = need("margins", (dict,), "a table of METRIC = number")
        for k, v in margins.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise src.error(f"margins.{k} must be a number >= 0, not {v!r}", key=k)
        out["margins"] = {str(k): float(v) for k, v in margins.items()}
    for key in ("images", "alert_on_regression"):
        if key in data:
            out[key] = need(key, (bool,), "true or false")
    for key, low in (("gpu_cost_per_hour", 0.0), ("spread_k", 0.0), ("notify_timeout", 0.1)):
        if key in data:
            v = need(key, (int, float), "a number")
            if not math.isfinite(v) or v < low:
                raise src.error(f"{key} must be >= {low:g}", key=key)
            out[key] = float(v)
    for key, low in (("window", 1), ("notify_retries", 0)):
        if key in data:
            v = need(key, (int,), "a whole number")
            if v < low:
                raise src.error(f"{key} must be >= {low}", key=key)
            out[key] = v
    return out


def resolve_settings(*, url: str | None = None, label: str | None = None, tags: Sequence[str] = (),
                     images: bool | None = None, gpu_cost_per_hour: float | None = None,
                     notify: str | None = None, alert_on_regression: bool | None = None,
                     cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> HistorySettings:
    """Settings from the flags given (None = not given), ``SDEVAL_HISTORY`` and the config file."""
    environ = os.environ if environ is None else environ
    src = config_source(cwd)
    base = HistorySettings()
    if src is not None:
        base = replace(base, source=src.name, **_settings_from_table(src))
    env_url = environ.get(ENV, "").strip() or None
    if env_url and not url:
        base = replace(base, url=env_url, source=ENV)
    if url:
        base = replace(base, url=url, source="--history")
    flag_tags = parse_tags(tags)
    if flag_tags:
        base = replace(base, tags={**base.tags, **flag_tags})
    for key, value in (("label", label), ("images", images), ("gpu_cost_per_hour", gpu_cost_per_hour),
                       ("notify", notify), ("alert_on_regression", alert_on_regression)):
        if value is not None:
            base = replace(base, **{key: value})
    if base.notify is not None:
        from sdeval.core.http import check_url

        try:
            base = replace(base, notify=check_url(base.notify, "--notify"))
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    if base.url is None:
        asked = [flag for flag, v in (("--label", label), ("--tag", tags or None), ("--history-images", images),
                                      ("--notify", notify), ("--alert-on-regression", alert_on_regression),
                                      ("--gpu-cost-per-hour", gpu_cost_per_hour)) if v]
        if asked:
            raise UsageError(f"{', '.join(asked)} need a history: --history PATH|URL, {ENV}, or "
                             "url in [tool.sdeval.history]")
    return base


def history_location(url: str | None, cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The store a ``sdeval history`` subcommand reads: the flag, else ``SDEVAL_HISTORY``, else the config."""
    settings = resolve_settings(url=url, cwd=cwd, environ=environ)
    if settings.url is None:
        raise UsageError(f"no history given: --history PATH|URL, {ENV}=..., or url in [tool.sdeval.history]")
    return settings.url
