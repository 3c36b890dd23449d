"""Where sdeval keeps downloaded weights and features, and whether it may use the network.

One cache root serves every run (``SDEVAL_CACHE_DIR``, else the platform's user cache dir) so
a nightly job, a CI step and an interactive run share downloads and features. Offline mode is
decided here once, because it must also reach huggingface_hub (which open_clip uses) *before*
that library is imported: huggingface_hub reads ``HF_HUB_OFFLINE`` at import time, and without
it a missing pretrained tag spends ~45 s in retries instead of failing at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_CACHE_DIR = "SDEVAL_CACHE_DIR"
ENV_OFFLINE = "SDEVAL_OFFLINE"
ENV_HF_OFFLINE = "HF_HUB_OFFLINE"
_TRUE = {"1", "true", "yes", "on"}

_offline_flag: bool | None = None


def cache_dir() -> Path:
    """The cache root (not created here: listing models must not write anything)."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sdeval", appauthor=False))


def models_dir() -> Path:
    """Where sdeval's own downloads (not open_clip's hub files) live."""
    return cache_dir() / "models"


def features_db_path() -> Path:
    return cache_dir() / "features.sqlite"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def is_offline(flag: bool | None = None) -> bool:
    """True when no network access is allowed: an explicit flag, ``set_offline``, or the env vars."""
    if flag is not None:
        return bool(flag)
    if _offline_flag is not None:
        return _offline_flag
    return _env_true(ENV_OFFLINE) or _env_true(ENV_HF_OFFLINE)


def set_offline(on: bool = True) -> None:
    """Switch offline mode for this process (``--offline``).

    Also sets ``HF_HUB_OFFLINE`` so that huggingface_hub, imported later by open_clip, makes no
    network attempt; if it was already imported its constant is patched too.
    """
    global _offline_flag
    _offline_flag = bool(on)
    if on:
        os.environ[ENV_HF_OFFLINE] = "1"
        hub_constants = sys.modules.get("huggingface_hub.constants")
        if hub_constants is not None:
            hub_constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def reset_offline() -> None:
    """Forget ``set_offline`` (tests); the environment variables decide again."""
    global _offline_flag
    _offline_flag = None


# -- other tools' caches: a file they already downloaded is used where it is (no copy, no download) --

#: ``ModelSpec.shared_cache`` values
TORCH_HUB = "torch-hub"
CLEAN_FID = "clean-fid"


def torch_hub_checkpoints_dir() -> Path:
    """Where torchvision's ``load_state_dict_from_url`` keeps weights: ``torch.hub.get_dir()/checkpoints``.

    Computed as torch.hub does (``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``)
    so that listing models does not import torch; a ``torch.hub.set_dir`` made by the caller is honoured
    when torch is already imported.
    """
    hub = sys.modules.get("torch.hub")
    if hub is not None:
        return Path(hub.get_dir()) / "checkpoints"
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def clean_fid_dir() -> Path:
    """Where clean-fid downloads its Inception (``cleanfid.features.build_feature_extractor``): /tmp, or the
    working directory on Windows."""
    return Path("./") if sys.platform.startswith("win") else Path("/tmp")


def openai_clip_dir() -> Path:
    """Where OpenAI's ``clip`` package and open_clip's URL downloads keep OpenAI's TorchScript archives."""
    return Path(os.path.expanduser("~/.cache/clip"))


def shared_cache_path(cache: str | None, filename: str | None) -> Path | None:
    """The file another tool's cache would hold under ``filename``, if it is there and may be trusted.

    clean-fid's folder is world-writable on Linux (/tmp): a file there is used only when the current
    user owns it, so another account cannot plant weights.
    """
    if not cache or not filename:
        return None
    if cache == TORCH_HUB:
        candidate = torch_hub_checkpoints_dir() / filename
    elif cache == CLEAN_FID:
        candidate = clean_fid_dir() / filename
    else:
        raise ValueError(f"unknown shared cache {cache!r}")
    try:
        st = candidate.stat()
    except OSError:
        return None
    if not candidate.is_file():
        return None
    if cache == CLEAN_FID and hasattr(os, "getuid") and st.st_uid != os.getuid():
        return None
    return candidate
