"""Which CLIP weights a run uses, found (and fetched, unless offline) without loading them.

A request is an open_clip architecture plus ``pretrained``: an open_clip tag (weights through the
registry: a local override, huggingface_hub's cache, OpenAI's ``~/.cache/clip``, a download), a
weights file, a directory or ``local-dir:DIR`` in open_clip's format, or ``none``/``random``. The
answer, a :class:`WeightsRef`, says how to build the model and what identifies its outputs, so the
feature cache key and the decode-thread preprocessing are known before (and, on a warm cache,
without) any weights are loaded. A warm run reads it from ``clip-weights-resolved.json`` in the
cache dir and does not import open_clip at all.

Two facts the numbers depend on are decided here, the same way for every path to a file:

* **QuickGELU.** OpenAI's weights were trained with QuickGELU, but open_clip 3.x builds ``ViT-L-14``
  with plain GELU and only *warns* when it meets the ``openai`` tag; every embedding then changes
  silently. The activation follows the tag (``--clip-pretrained openai``, ``--model-path
  clip-vit-l-14-openai=FILE``), else the registry's knowledge of the file (its sha256 is one a
  registry source publishes, or it lies in the hub cache of a repo the registry names), else the
  file's format (a TorchScript archive is OpenAI's release format: open_clip's
  ``load_openai_model`` builds those with QuickGELU), else the architecture's config. The reason is
  kept in ``quick_gelu_from`` and recorded in the protocol.
* **TorchScript archives** (OpenAI's own ``ViT-L-14.pt``): ``torch.load(weights_only=True)``
  refuses them, and open_clip's fallback is an unrestricted ``torch.load``. They are read with
  TorchScript's own loader instead (:func:`torchscript_state_dict`), as ``load_openai_model`` does
  first: it builds TorchScript values only and runs no Python code, unlike an arbitrary pickle.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from sdeval.core.errors import UsageError
from sdeval.core.io import atomic_write_text

RANDOM_TAGS = ("none", "random")
LOCAL_DIR = "local-dir:"
MEMO_FILE = "clip-weights-resolved.json"
#: bump when resolution itself changes (it is part of the memo key, so old answers are not reused)
RESOLUTION_VERSION = "2"
#: ``WeightsRef.checkpoint_format`` values
STATE_DICT, TORCHSCRIPT, LOCAL_DIR_FORMAT, NO_WEIGHTS = "state_dict", "torchscript", "local-dir", "none"
#: entries of OpenAI's archives that are not weights (open_clip drops them too)
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
_memo_lock = threading.Lock()


@dataclass(frozen=True, eq=False)
class WeightsRef:
    """Resolved weights: how to build the model, and the facts that identify its outputs."""

    #: what open_clip.create_model gets as model_name ("ViT-L-14" or "local-dir:DIR")
    load_name: str
    #: file passed as ``pretrained`` (None for local-dir and random weights)
    checkpoint: str | None
    #: human label: "ViT-L-14/openai", "ViT-B-32/file", "local-dir"
    label: str
    #: open_clip tag, file, local-dir or random
    source: str
    sha256: str | None
    registry_id: str | None
    force_quick_gelu: bool
    #: open_clip preprocess settings for these weights (size, mean, std, interpolation, ...)
    preprocess: Mapping[str, Any]
    model_cfg: Mapping[str, Any] = field(repr=False)
    #: extra settings forced on create_model (a tag's mean/std/interpolation)
    force_preprocess: Mapping[str, Any] | None = None
    #: state_dict (torch.save / safetensors), torchscript (OpenAI's archives), local-dir or none
    checkpoint_format: str = STATE_DICT
    #: why the model runs (or does not run) QuickGELU
    quick_gelu_from: str = ""
    #: the file compared with what the registry publishes for ``registry_id`` (models.fetch.weights_check)
    weights_check: str = ""

    @property
    def embed_dim(self) -> int | None:
        value = self.model_cfg.get("embed_dim")
        return int(value) if value is not None else None

    @property
    def context_length(self) -> int:
        return int(self.model_cfg.get("text_cfg", {}).get("context_length", 77))

    @property
    def quick_gelu(self) -> bool:
        return bool(self.model_cfg.get("quick_gelu"))


def resolve_weights(model_name: str, pretrained: str, options: Mapping[str, Any] | None = None, *,
                    offline: bool | None = None, progress: Callable[[Any], None] | None = None) -> WeightsRef:
    """The weights a request names: a previous answer whose files are unchanged, else resolved now."""
    ref = _load_memo(model_name, pretrained, options)
    if ref is None:
        ref = _resolve(model_name, pretrained, options, offline=offline, progress=progress)
        _save_memo(model_name, pretrained, options, ref)
    return ref


# -- files ---------------------------------------------------------------------------------------

def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """A TorchScript zip (``constants.pkl`` beside the code) rather than a ``torch.save`` checkpoint.

    Read from the zip directory only (no torch import, no full read of a 1.7 GB file).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def torchscript_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The weights inside a TorchScript archive, on CPU, without OpenAI's non-weight entries.

    ``torch.jit.load`` is TorchScript's loader, not Python's unpickler: it restores TorchScript
    modules and tensors and cannot run arbitrary Python. The module is never called; only its
    tensors are kept.
    """
    import torch

    with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; the file is TorchScript
        warnings.simplefilter("ignore")
        module = torch.jit.load(os.fspath(path), map_location="cpu")
    return {k: v for k, v in module.state_dict().items() if k not in _OPENAI_EXTRA_KEYS}


# -- resolution ----------------------------------------------------------------------------------

def _preprocess_cfg(model_cfg: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """open_clip's final eval preprocessing, computed as create_model does (without building it)."""
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    cfg = merge_preprocess_dict(asdict(PreprocessCfg()), dict(overrides or {}))
    size = model_cfg.get("vision_cfg", {}).get("image_size")
    if size is not None:
        cfg["size"] = (size, size) if isinstance(size, int) else tuple(size)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def _builtin_model_cfg(model_name: str) -> dict[str, Any]:
    import open_clip

    cfg = open_clip.get_model_config(model_name.replace("/", "-"))
    if cfg is None:
        raise UsageError(f"unknown open_clip model '{model_name}' (see open_clip.list_models(); a local "
                         f"model can be given as clip_pretrained='local-dir:DIR')")
    return dict(cfg)


def _tag_cfg(model_name: str, tag: str) -> dict[str, Any]:
    from open_clip.pretrained import get_pretrained_cfg

    return dict(get_pretrained_cfg(model_name, tag) or {})


def _local_dir_ref(directory: Path, registry_id: str | None = None) -> WeightsRef:
    from sdeval.models.hashes import weights_sha256

    directory = directory.absolute()
    config_path = directory / "open_clip_config.json"
    if not config_path.is_file():
        raise UsageError(f"local-dir {directory} has no open_clip_config.json (open_clip's format: "
                         f"open_clip_config.json + open_clip_model.safetensors)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        model_cfg = config["model_cfg"]
    except (ValueError, KeyError) as exc:
        raise UsageError(f"{config_path} is not an open_clip config with 'model_cfg': {exc}") from exc
    preprocess = _preprocess_cfg(model_cfg, config.get("preprocess_cfg") or {})
    return WeightsRef(load_name=f"{LOCAL_DIR}{directory}", checkpoint=None, label=f"local-dir:{directory.name}",
                      source="local-dir", sha256=weights_sha256(directory), registry_id=registry_id,
                      force_quick_gelu=False, preprocess=preprocess, model_cfg=model_cfg,
                      checkpoint_format=LOCAL_DIR_FORMAT, quick_gelu_from="the local-dir's open_clip_config.json")


def _file_ref(model_name: str, path: Path, *, tag: str | None, registry_id: str | None, label: str,
              source: str, options: Mapping[str, Any] | None) -> WeightsRef:
    """A weights file, with QuickGELU and the tag's preprocessing decided as the module docstring says."""
    from sdeval.models.fetch import weights_check
    from sdeval.models.hashes import weights_sha256
    from sdeval.models.registry import spec_for_weights_file

    model_cfg = _builtin_model_cfg(model_name)
    sha = weights_sha256(path)
    fmt = TORCHSCRIPT if is_torchscript_archive(path) else STATE_DICT
    tag_model, why = model_name, f"open_clip tag '{tag}'"
    if tag is None:
        known = spec_for_weights_file(path, sha)
        if known is not None and known.kind == "open_clip" and known.open_clip_pretrained:
            tag, tag_model, registry_id = known.open_clip_pretrained, known.open_clip_model or model_name, known.id
            why = f"registry model '{known.id}' (open_clip tag '{tag}'), recognised from the file"
    tag_cfg = _tag_cfg(tag_model, tag) if tag else {}
    if tag_cfg:
        needs = bool(tag_cfg.get("quick_gelu", False))
    elif fmt == TORCHSCRIPT:
        needs, why = True, "TorchScript archive: OpenAI's release format, trained with QuickGELU"
    else:
        needs, why = bool(model_cfg.get("quick_gelu", False)), f"the '{model_name}' architecture config"
    force = needs and not bool(model_cfg.get("quick_gelu", False))
    if force:
        model_cfg = {**model_cfg, "quick_gelu": True}
    force_pp = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode", "fill_color")
                if k in tag_cfg}
    return WeightsRef(load_name=model_name, checkpoint=str(path), label=label, source=source, sha256=sha,
                      registry_id=registry_id, force_quick_gelu=force,
                      preprocess=_preprocess_cfg(model_cfg, force_pp), model_cfg=model_cfg,
                      force_preprocess=force_pp or None, checkpoint_format=fmt, quick_gelu_from=why,
                      weights_check=weights_check(registry_id, path, options) if registry_id else "")


def _resolve(model_name: str, pretrained: str, options: Mapping[str, Any] | None, *,
             offline: bool | None, progress: Callable[[Any], None] | None) -> WeightsRef:
    """Find (and fetch, unless offline) the weights, without loading them."""
    from sdeval.models import fetch as _fetch
    from sdeval.models.cache import is_offline, set_offline

    if is_offline(offline):
        set_offline(True)  # before open_clip (and so huggingface_hub) is imported
    for value in (model_name, pretrained):
        if value.startswith(LOCAL_DIR):
            directory = Path(value[len(LOCAL_DIR):]).expanduser().absolute()
            if not directory.is_dir():
                raise UsageError(f"local-dir not found: {directory}")
            return _local_dir_ref(directory)
    if pretrained.lower() in RANDOM_TAGS:
        model_cfg = _builtin_model_cfg(model_name)
        return WeightsRef(load_name=model_name, checkpoint=None, label=f"{model_name}/random", source="random",
                          sha256=None, registry_id=None, force_quick_gelu=False,
                          preprocess=_preprocess_cfg(model_cfg, None), model_cfg=model_cfg,
                          checkpoint_format=NO_WEIGHTS, quick_gelu_from=f"the '{model_name}' architecture config")
    candidate = Path(pretrained).expanduser().absolute()
    if candidate.is_dir():
        return _local_dir_ref(candidate)
    if candidate.is_file():
        return _file_ref(model_name, candidate, tag=None, registry_id=None, label=f"{model_name}/file",
                         source="file", options=options)
    if any(sep in pretrained for sep in ("/", os.sep)) or pretrained.endswith(_WEIGHT_SUFFIXES):
        raise UsageError(f"clip_pretrained looks like a path but does not exist: {pretrained}")
    # an open_clip pretrained tag
    from open_clip.pretrained import list_pretrained_tags_by_model

    _builtin_model_cfg(model_name)
    if not _tag_cfg(model_name, pretrained):
        tags = list_pretrained_tags_by_model(model_name)
        raise UsageError(f"open_clip has no pretrained tag '{pretrained}' for '{model_name}'"
                         f" (known: {', '.join(tags) or 'none'}); or give a weights file or local-dir:DIR")
    path = _fetch.resolve_open_clip(model_name, pretrained, options=options, progress=progress, offline=offline)
    registry_id = _fetch.open_clip_model_id(model_name, pretrained)
    if path.is_dir():  # a local override in open_clip's local-dir format
        return _local_dir_ref(path, registry_id)
    return _file_ref(model_name, path, tag=pretrained, registry_id=registry_id,
                     label=f"{model_name}/{pretrained}", source=f"open_clip tag '{pretrained}'", options=options)


# -- the resolution memo: a warm run knows its weights without importing open_clip -------------------

def _open_clip_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("open_clip_torch")
    except PackageNotFoundError:
        return "?"


def _memo_key(model_name: str, pretrained: str, options: Mapping[str, Any] | None) -> str | None:
    """What a resolution depends on besides file contents: the request, overrides, open_clip, this code."""
    from sdeval.models.fetch import open_clip_model_id
    from sdeval.models.registry import override_path

    if pretrained.lower() in RANDOM_TAGS:
        return None
    try:
        override = override_path(open_clip_model_id(model_name, pretrained), options)
    except Exception:  # noqa: BLE001 - odd options: just resolve normally
        return None
    return json.dumps([_absolute(model_name), _absolute(pretrained), override, _open_clip_version(),
                       RESOLUTION_VERSION])


def _absolute(value: str) -> str:
    """Paths made absolute so the same relative path from another directory is another key."""
    if value.startswith(LOCAL_DIR):
        return LOCAL_DIR + os.path.abspath(os.path.expanduser(value[len(LOCAL_DIR):]))
    if "/" in value or os.sep in value or value.endswith(_WEIGHT_SUFFIXES):
        return os.path.abspath(os.path.expanduser(value))
    return value


def _dependency_files(ref: WeightsRef) -> list[str]:
    if ref.checkpoint:
        return [ref.checkpoint]
    if ref.load_name.startswith(LOCAL_DIR):
        directory = Path(ref.load_name[len(LOCAL_DIR):])
        return sorted(str(p) for p in directory.iterdir() if p.is_file())
    return []


def _stamps(files: Sequence[str]) -> list[list[Any]] | None:
    out = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            return None
        out.append([f, st.st_size, st.st_mtime_ns])
    return out


def _memo_path() -> Path:
    from sdeval.models.cache import cache_dir

    return cache_dir() / MEMO_FILE


def _read_memo() -> dict[str, Any]:
    try:
        memo = json.loads(_memo_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _load_memo(model_name: str, pretrained: str, options: Mapping[str, Any] | None) -> WeightsRef | None:
    """A previous resolution of the same request whose files are unchanged (size and mtime)."""
    key = _memo_key(model_name, pretrained, options)
    if key is None:
        return None
    try:
        entry = _read_memo()[key]
        fields = dict(entry["ref"])
        files = entry.get("files") or []
    except (KeyError, TypeError, AttributeError):
        return None
    if not files or _stamps([f[0] for f in files]) != files:
        return None
    try:
        return WeightsRef(**fields)
    except TypeError:
        return None


def _save_memo(model_name: str, pretrained: str, options: Mapping[str, Any] | None, ref: WeightsRef) -> None:
    key = _memo_key(model_name, pretrained, options)
    files = _stamps(_dependency_files(ref))
    if key is None or not files or ref.sha256 is None:
        return
    with _memo_lock:
        memo = _read_memo()
        memo[key] = {"ref": json.loads(json.dumps(asdict(ref), default=list)), "files": files}
        try:
            atomic_write_text(_memo_path(), json.dumps(memo, indent=1))
        except OSError:  # a read-only cache dir only costs the memo
            pass
