"""Model weights: registry of ids, cache dir, offline mode, fetch and verify.

Nothing here imports torch: ``sdeval models list`` and ``--help`` stay fast. ``fetch`` is the
submodule; its ``fetch()`` function is re-exported as ``fetch_models`` so the name does not
shadow the module (``sdeval.models.fetch.BACKOFF_S`` must stay reachable).
"""

from __future__ import annotations

from sdeval.models.cache import cache_dir, is_offline, models_dir, set_offline
from sdeval.models.fetch import (ChecksumMismatchError, CorruptModelError, FetchProgress,
                                 ModelFetchError, ModelStatus, VerifyResult, list_models, path, resolve,
                                 resolve_open_clip, verify)
from sdeval.models.fetch import fetch as fetch_models
from sdeval.models.registry import ModelSpec, get_spec, register_model, specs

__all__ = [
    "ChecksumMismatchError", "CorruptModelError", "FetchProgress", "ModelFetchError", "ModelSpec",
    "ModelStatus", "VerifyResult", "cache_dir", "fetch_models", "get_spec", "is_offline", "list_models",
    "models_dir", "path", "register_model", "resolve", "resolve_open_clip", "set_offline", "specs",
    "verify",
]
