"""CLIP image and text embeddings through open_clip, computed once and shared by every CLIP metric.

``clip_image`` gives the L2-normalised image embedding (what clip_score, the aesthetic head and any
CLIP-based safety head read); ``clip_text`` gives the L2-normalised embedding of each record's
prompt, encoded once per distinct prompt. Both run on one loaded model per
(architecture, weights, device, precision) per process.

Which weights, and how they are built (QuickGELU, OpenAI's TorchScript archives), is decided in
:mod:`sdeval.models.clip_weights` without loading anything; preprocessing is open_clip's own eval
transform for those weights, so the feature cache key and the decode-thread preprocessing are
known before (and, on a warm cache, without) any weights are loaded. The loaded model lives in
:mod:`sdeval.models.loaded`, on the device :func:`sdeval.core.device.choose_device` picks for
every model of the run.

Prompts longer than the context (77 tokens) are truncated keeping the end-of-text token, whose
position the text embedding is pooled from; the row gets a warning.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from sdeval.core.device import choose_device
from sdeval.core.errors import ModelMissingError, UsageError
from sdeval.features.base import FeatureExtractor, Missing
from sdeval.inputs.record import ImageRecord
from sdeval.models.clip_weights import TORCHSCRIPT, WeightsRef, resolve_weights, torchscript_state_dict
from sdeval.models.loaded import clear, load_once, loaded

DEFAULT_MODEL = "ViT-L-14"
DEFAULT_PRETRAINED = "openai"
DEFAULT_BATCH_SIZE = 32
#: bump when sdeval's own handling of CLIP inputs/outputs changes (part of the cache key)
PREPROCESSING_VERSION = "1"
OPTION_NAMES = ("clip_model", "clip_pretrained", "device", "batch_size", "clip_precision",
                "offline", "model_paths")


# -- settings ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipSettings:
    """What the user asked for, from run options."""

    model_name: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    #: auto (fp16 autocast on CUDA, fp32 elsewhere), fp32, or fp16 (autocast; CUDA only)
    precision: str = "auto"
    offline: bool | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> "ClipSettings":
        o = options or {}
        batch = o.get("batch_size")
        batch = DEFAULT_BATCH_SIZE if batch is None else batch
        try:
            batch = int(batch)
        except (TypeError, ValueError):
            raise UsageError(f"batch_size must be a positive integer, got {batch!r}") from None
        if batch < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch}")
        precision = str(o.get("clip_precision") or "auto").lower()
        if precision not in ("auto", "fp32", "fp16"):
            raise UsageError(f"clip_precision must be auto, fp32 or fp16, got {precision!r}")
        offline = o.get("offline")
        return cls(model_name=str(o.get("clip_model") or DEFAULT_MODEL),
                   pretrained=str(o.get("clip_pretrained") or DEFAULT_PRETRAINED),
                   device=str(o.get("device") or "auto"), batch_size=batch, precision=precision,
                   offline=None if offline is None else bool(offline))


# -- loaded backbones (one per weights/device/precision per process, in models.loaded) -----------------

LOADED_KIND = "clip"
TEXT_MEMO_MAX = 100_000


@dataclass(eq=False)
class Backbone:
    """One loaded open_clip model with its tokenizer, counters and text memo."""

    ref: WeightsRef
    model: Any
    tokenizer: Any
    device: Any
    autocast: bool
    image_calls: int = 0
    images_encoded: int = 0
    text_calls: int = 0
    texts_encoded: int = 0
    text_memo: dict[str, "TextEmbedding"] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _uses_autocast(device: str, precision: str) -> bool:
    if precision == "fp16" and not device.startswith("cuda"):
        raise UsageError("clip_precision fp16 needs a CUDA device")
    return device.startswith("cuda") and precision in ("auto", "fp16")


def _backbone_key(ref: WeightsRef, device: str, autocast: bool) -> tuple:
    return (ref.load_name, ref.checkpoint, ref.sha256, ref.force_quick_gelu, ref.checkpoint_format, device, autocast)


def get_backbone(ref: WeightsRef, device: str, autocast: bool) -> Backbone:
    """The loaded model for these weights on this device, loading it on first use."""
    return load_once(LOADED_KIND, _backbone_key(ref, device, autocast), lambda: _load_backbone(ref, device, autocast))


def _load_backbone(ref: WeightsRef, device: str, autocast: bool) -> Backbone:
    import open_clip
    import torch

    kwargs: dict[str, Any] = {"device": device, "weights_only": True}
    if ref.force_quick_gelu:
        kwargs["force_quick_gelu"] = True
    if ref.force_preprocess:
        kwargs["force_preprocess_cfg"] = dict(ref.force_preprocess)
    if ref.source == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = open_clip.create_model(ref.load_name, pretrained=None, **kwargs)
    else:
        try:
            if ref.checkpoint_format == TORCHSCRIPT:  # OpenAI's archive: its tensors into open_clip's model
                model = open_clip.create_model(ref.load_name, pretrained=None, **kwargs)
                model.load_state_dict(torchscript_state_dict(ref.checkpoint or ""), strict=True)
            else:
                model = open_clip.create_model(ref.load_name, pretrained=ref.checkpoint,
                                               require_pretrained=True, **kwargs)
        except (RuntimeError, ValueError, OSError, KeyError) as exc:
            where = ref.checkpoint or ref.load_name
            raise ModelMissingError(
                f"could not load CLIP weights {ref.label} from {where}: {exc}\n  how to get it: "
                f"check the file, or run `sdeval models fetch {ref.registry_id or ref.label}`") from exc
    model.eval()
    tokenizer = open_clip.get_tokenizer(ref.load_name)
    return Backbone(ref=ref, model=model, tokenizer=tokenizer, device=torch.device(device), autocast=autocast)


def loaded_backbones() -> list[Backbone]:
    return loaded(LOADED_KIND)


def clear_backbones() -> None:
    """Drop every loaded CLIP model (tests, or to free GPU memory between runs)."""
    clear(LOADED_KIND)


def forward_counts() -> dict[str, int]:
    """Forward passes so far in this process, summed over loaded backbones (for tests/benchmarks)."""
    out = {"image_calls": 0, "images_encoded": 0, "text_calls": 0, "texts_encoded": 0}
    for b in loaded_backbones():
        out["image_calls"] += b.image_calls
        out["images_encoded"] += b.images_encoded
        out["text_calls"] += b.text_calls
        out["texts_encoded"] += b.texts_encoded
    return out


def _autocast_ctx(backbone: Backbone) -> Any:
    import contextlib

    import torch

    if backbone.autocast:
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


# -- shared extractor plumbing ------------------------------------------------------------------------

class _ClipBase(FeatureExtractor):
    option_names: ClassVar[tuple[str, ...]] = OPTION_NAMES

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})
        self.settings = ClipSettings.from_options(self.options)
        self._ref: WeightsRef | None = None
        self._device: str | None = None
        self._lock = threading.Lock()

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    def weights(self) -> WeightsRef:
        """Resolve (fetch if needed and allowed) the weights once; no model is loaded."""
        if self._ref is None:
            with self._lock:
                if self._ref is None:
                    self._ref = resolve_weights(self.settings.model_name, self.settings.pretrained, self.options,
                                                offline=self.settings.offline,
                                                progress=self.options.get("fetch_progress"))
        return self._ref

    def device(self) -> str:
        if self._device is None:
            self._device = choose_device(self.settings.device)
        return self._device

    def autocast(self) -> bool:
        return _uses_autocast(self.device(), self.settings.precision)

    def backbone(self) -> Backbone:
        return get_backbone(self.weights(), self.device(), self.autocast())

    def embed_dim(self) -> int | None:
        """Width of the embedding, from the config (no weights loaded)."""
        return self.weights().embed_dim

    def check_available(self) -> None:
        """Fail before decoding starts: weights missing offline, bad tag, bad path, bad device."""
        self.weights()
        self.autocast()

    def _precision_label(self) -> str:
        return "amp-fp16" if self.autocast() else "fp32"

    def _key(self, kind: str, extra: Mapping[str, Any]) -> str | None:
        ref = self.weights()
        if ref.sha256 is None:  # random weights: nothing stable to key on
            return None
        parts = {"feature": self.id, "version": self.version, "sdeval_preprocessing": PREPROCESSING_VERSION,
                 "model": ref.label, "weights_sha256": ref.sha256, "quick_gelu": ref.quick_gelu,
                 "model_cfg": ref.model_cfg, "precision": self._precision_label(), **extra}
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        return f"{kind}/{ref.label}/{ref.sha256[:16]}/{self._precision_label()}/{digest[:16]}"

    def protocol(self) -> dict[str, Any]:
        import open_clip
        import torch

        ref = self.weights()
        return {
            "id": self.id, "version": self.version, "model": ref.label, "weights_source": ref.source,
            "weights_sha256": ref.sha256, "registry_id": ref.registry_id, "weights_format": ref.checkpoint_format,
            "quick_gelu": ref.quick_gelu, "quick_gelu_from": ref.quick_gelu_from, "weights_check": ref.weights_check,
            "embed_dim": ref.embed_dim, "device": self.device(),
            "autocast": "float16" if self.autocast() else None, "dtype": "float16 autocast" if self.autocast() else "float32",
            "batch_size": self.batch_size, "open_clip": getattr(open_clip, "__version__", None),
            "torch": torch.__version__, "cache_key": self.cache_key(),
        }


# -- image embeddings ---------------------------------------------------------------------------------

class ClipImage(_ClipBase):
    """L2-normalised float32 CLIP image embedding, one model forward per image.

    Options: ``clip_model`` (open_clip architecture, default ViT-L-14), ``clip_pretrained`` (an
    open_clip tag (default openai), a ``.pt``/``.safetensors`` file, or ``local-dir:DIR``),
    ``device`` (auto: cuda, mps, cpu), ``batch_size``, ``clip_precision`` (auto: fp16 autocast
    on CUDA), ``offline``, ``model_paths`` (registry id -> local path).
    """

    id: ClassVar[str] = "clip_image"
    version: ClassVar[str] = "1"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._transform: Callable[[Any], Any] | None = None

    def transform(self) -> Callable[[Any], Any]:
        """open_clip's eval transform for these weights (resize, crop, tensor, normalise)."""
        if self._transform is None:
            from open_clip.transform import PreprocessCfg, image_transform_v2

            pp = dict(self.weights().preprocess)
            pp = {k: (tuple(v) if isinstance(v, list) else v) for k, v in pp.items()}
            transform = image_transform_v2(PreprocessCfg(**pp), is_train=False)
            with self._lock:
                if self._transform is None:
                    self._transform = transform
        return self._transform

    def prepare(self, image: np.ndarray, record: ImageRecord) -> Any:
        """Decoded RGB uint8 (H, W, 3) -> normalised (3, S, S) float32 tensor. Runs in worker threads."""
        from PIL import Image

        return self.transform()(Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)))

    def compute(self, prepared: Sequence[Any]) -> list[np.ndarray]:
        """Batched forward under inference_mode (fp16 autocast on CUDA); one row per item."""
        if len(prepared) == 0:
            return []
        import torch

        backbone = self.backbone()
        out: list[np.ndarray] = []
        step = self.batch_size
        for start in range(0, len(prepared), step):
            chunk = [p if isinstance(p, torch.Tensor) else torch.as_tensor(p) for p in prepared[start:start + step]]
            batch = torch.stack(chunk)
            if backbone.device.type == "cuda":
                batch = batch.pin_memory().to(backbone.device, non_blocking=True)
            else:
                batch = batch.to(backbone.device)
            with torch.inference_mode(), _autocast_ctx(backbone):
                features = backbone.model.encode_image(batch)
            features = torch.nn.functional.normalize(features.float(), dim=-1)
            array = features.cpu().numpy().astype(np.float32, copy=False)
            with backbone.lock:
                backbone.image_calls += 1
                backbone.images_encoded += len(chunk)
            out.extend(np.ascontiguousarray(row) for row in array)
        return out

    def cache_key(self) -> str | None:
        """clip_image/<model>/<weights sha256[:16]>/<precision>/<digest of everything else>."""
        return self._key("clip_image", {"preprocess": dict(self.weights().preprocess)})

    def protocol(self) -> dict[str, Any]:
        proto = super().protocol()
        proto["preprocessing"] = dict(self.weights().preprocess)
        proto["output"] = "L2-normalised image embedding (float32)"
        return proto


# -- text embeddings ----------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class TextEmbedding:
    """A prompt's L2-normalised embedding and whether the prompt had to be truncated."""

    vector: np.ndarray
    n_tokens: int
    context_length: int
    truncated: bool

    @property
    def warning(self) -> str | None:
        if not self.truncated:
            return None
        return (f"prompt has {self.n_tokens} tokens, over CLIP's context of {self.context_length}; "
                f"truncated to {self.context_length} keeping the end-of-text token")


def tokenize(tokenizer: Any, prompt: str, context_length: int) -> tuple[list[int], int, bool]:
    """(token ids padded to the context, tokens before truncation, truncated?).

    For CLIP's BPE tokenizer the sequence is <start> + tokens + <end>; when too long it is cut to
    the context and its last slot set back to <end>, because the text embedding is read at the
    end-of-text position: cutting it off would pool from an arbitrary word instead.
    """
    from open_clip.tokenizer import SimpleTokenizer

    if isinstance(tokenizer, SimpleTokenizer):
        ids = [tokenizer.sot_token_id] + tokenizer.encode(prompt) + [tokenizer.eot_token_id]
        n = len(ids)
        truncated = n > context_length
        if truncated:
            ids = ids[:context_length]
            ids[-1] = tokenizer.eot_token_id
        return ids + [0] * (context_length - len(ids)), n, truncated
    # other tokenizers (HF-based models): let open_clip do it, count tokens where we can
    row = tokenizer([prompt], context_length=context_length)[0].tolist()
    n = len(row)
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and callable(inner):
        try:
            n = len(inner(prompt)["input_ids"])
        except Exception:  # noqa: BLE001 - counting is best effort
            n = len(row)
    return row, n, n > context_length


class ClipText(_ClipBase):
    """L2-normalised CLIP text embedding of each record's prompt, once per distinct prompt.

    Needs no pixels (``needs_image``): the pipeline may call ``prepare(None, record)``. Cached by
    the prompt's sha256 (``content_key``), not the file's: a manifest can change a prompt
    without changing the image.
    """

    id: ClassVar[str] = "clip_text"
    version: ClassVar[str] = "1"
    needs_image: ClassVar[bool] = False

    def prepare(self, image: np.ndarray | None, record: ImageRecord) -> str | None:
        return record.metadata.prompt if record.metadata is not None else None

    def content_key(self, record: ImageRecord) -> str | None:
        prompt = self.prepare(None, record)
        if not prompt or not prompt.strip():
            return None
        return "prompt:" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()

    def compute(self, prepared: Sequence[Any]) -> list[TextEmbedding | Missing]:
        """Encode the distinct prompts not seen before in this process; Missing for no prompt."""
        if not any(isinstance(p, str) and p.strip() for p in prepared):  # nothing to encode: no model load
            return [Missing("no prompt" if not p else "empty prompt") for p in prepared]
        import torch

        backbone = self.backbone()
        context = backbone.ref.context_length
        new = [p for p in dict.fromkeys(p for p in prepared if isinstance(p, str) and p.strip())
               if p not in backbone.text_memo]
        step = self.batch_size
        for start in range(0, len(new), step):
            chunk = new[start:start + step]
            tokenized = [tokenize(backbone.tokenizer, p, context) for p in chunk]
            ids = torch.tensor([t[0] for t in tokenized], dtype=torch.long, device=backbone.device)
            with torch.inference_mode(), _autocast_ctx(backbone):
                features = backbone.model.encode_text(ids)
            features = torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()
            with backbone.lock:
                backbone.text_calls += 1
                backbone.texts_encoded += len(chunk)
                if len(backbone.text_memo) + len(chunk) > TEXT_MEMO_MAX:
                    backbone.text_memo.clear()
                for prompt, (_, n, truncated), row in zip(chunk, tokenized, features):
                    backbone.text_memo[prompt] = TextEmbedding(np.ascontiguousarray(row, dtype=np.float32),
                                                               n, context, truncated)
        out: list[TextEmbedding | Missing] = []
        for p in prepared:
            if not isinstance(p, str) or not p.strip():
                out.append(Missing("no prompt" if not p else "empty prompt"))
            else:
                memo = backbone.text_memo.get(p)
                if memo is None:  # evicted between encode and read: encode alone
                    memo = self.compute([p])[0]
                out.append(memo)
        return out

    def cache_key(self) -> str | None:
        """clip_text/<model>/<weights sha256[:16]>/<precision>/<digest incl. tokenizer>."""
        return self._key("clip_text", {"context_length": self.weights().context_length,
                                       "tokenizer": "open_clip.get_tokenizer", "eot_kept": True})

    @staticmethod
    def to_cache(value: TextEmbedding) -> dict[str, Any]:
        return {"vector": value.vector, "n_tokens": value.n_tokens,
                "context_length": value.context_length, "truncated": value.truncated}

    @staticmethod
    def from_cache(stored: Mapping[str, Any]) -> TextEmbedding:
        return TextEmbedding(np.asarray(stored["vector"], dtype=np.float32), int(stored["n_tokens"]),
                             int(stored["context_length"]), bool(stored["truncated"]))

    def protocol(self) -> dict[str, Any]:
        proto = super().protocol()
        proto["output"] = "L2-normalised text embedding of the prompt (float32)"
        proto["truncation"] = f"over {self.weights().context_length} tokens: cut, end-of-text token kept"
        return proto
