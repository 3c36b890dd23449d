"""Exception types and the exit code each one maps to.

The CLI maps exceptions explicitly (DESIGN.md, exit codes): anything derived from
:class:`SdevalError` carries its own exit code; anything else is an internal error (3).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class SdevalError(Exception):
    """Base class for errors sdeval reports to the user with a clear message."""

    exit_code: int = EXIT_USAGE


class UsageError(SdevalError):
    """Bad arguments or configuration given by the user."""


class InputError(SdevalError):
    """Inputs cannot be used at all (no images found, unreadable manifest...)."""


class PolicyError(SdevalError):
    """A gate policy is invalid. The message names the key and where it came from."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        where = ""
        if source:
            where = f"{source}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(f"{where}{message}")
        self.source = source
        self.key = key
        self.line = line


class OutputError(SdevalError):
    """The result folder (or another output) cannot be written: a file in the way, read-only, full."""


class MetricUnavailableError(SdevalError):
    """A metric asked for cannot run here: not built in, weights missing, extra not installed.

    ``remedy`` tells the user how to get it.
    """

    def __init__(self, metric: str, why: str, remedy: str | None = None) -> None:
        msg = f"metric '{metric}' is not available: {why}"
        if remedy:
            msg += f"\n  how to get it: {remedy}"
        super().__init__(msg)
        self.metric = metric
        self.why = why
        self.remedy = remedy


class ModelMissingError(SdevalError):
    """Model weights are not in the cache and cannot be fetched (offline, or no network)."""


class DecodeError(Exception):
    """One image could not be decoded. Never escapes the pipeline: it becomes an error row."""


class NothingPairedError(InputError):
    """``sdeval compare`` was asked to pair arms and an arm has no image pair with the baseline (exit 2)."""
