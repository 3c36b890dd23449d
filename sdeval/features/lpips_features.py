"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with its backbone from sdeval's registry.

``lpips.LPIPS(pretrained=True)`` would download torchvision's ImageNet backbone itself; sdeval
builds it with ``pnet_rand=True`` (the perceptual linear layers still load from the wheel's
``weights/v0.1/<net>.pth``) and then copies the torchvision backbone, obtained through the model
registry (``lpips-alex`` / ``lpips-vgg``: cache dir, offline mode, ``--model-path``), into the
trunk's slices. The numbers are therefore the package's own forward.

Images are compared at ``lpips_size`` x ``lpips_size`` (default 256, bicubic from uint8) scaled to
[-1, 1], as ``lpips.im2tensor`` does: LPIPS needs equal sizes and is resolution dependent, so the
size is part of the protocol.

Two features, both read by the pipeline's loader, decode pool and feature cache:

* ``lpips_ref_pair`` (a pair feature, per image): the distance to a paired reference image, matched
  by a pairs file, by the same relative path under the reference folder, or by file stem; the
  reference is the feature's companion file (read and decoded by the same loader, cached on both
  files' sha256);
* ``lpips_trunk`` (per image): the unit-normalised trunk activations of each layer, from which
  :meth:`LpipsTrunk.mean_pairwise` forms every pair's distance exactly as ``LPIPS.forward`` does
  (the trunk once per image, not once per pair). Per image it holds sum(C*H*W) float32 values over
  the five layers: about 2.5 MB for ``alex`` at 256, 32 MB for ``vgg``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from sdeval.core.errors import InputError, ModelMissingError, UsageError
from sdeval.features.base import Companion, FeatureExtractor, Missing
from sdeval.inputs.record import ImageRecord

NETS = {"alex": "lpips-alex", "vgg": "lpips-vgg"}
#: torchvision ``features`` index ranges of each LPIPS slice (lpips.pretrained_networks)
_SLICES = {"alex": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
           "vgg": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))}
DEFAULT_SIZE = 256
#: the LPIPS version of the perceptual linear layers in the wheel (``weights/v0.1``)
LPIPS_VERSION = "0.1"
_COMMON_OPTIONS = ("lpips_net", "lpips_size", "device", "batch_size", "offline", "model_paths")
OPTION_NAMES = _COMMON_OPTIONS + ("lpips_ref_dir", "lpips_pairs", "lpips_generated_roots")
TRUNK_OPTION_NAMES = _COMMON_OPTIONS


@dataclass(frozen=True)
class LpipsSettings:
    net: str = "alex"
    size: int = DEFAULT_SIZE
    device: str = "auto"
    batch_size: int = 32

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> "LpipsSettings":
        o = options or {}
        net = str(o.get("lpips_net") or "alex").lower()
        if net not in NETS:
            raise UsageError(f"lpips_net must be one of {', '.join(NETS)}, got {net!r}")
        try:
            size = int(o.get("lpips_size") or DEFAULT_SIZE)
        except (TypeError, ValueError):
            raise UsageError(f"lpips_size must be an integer, got {o.get('lpips_size')!r}") from None
        if size < 32:
            raise UsageError(f"lpips_size must be at least 32, got {size}")
        return cls(net=net, size=size, device=str(o.get("device") or "auto"),
                   batch_size=int(o.get("batch_size") or 32))


def linear_weights_path(net: str) -> Path:
    """The perceptual linear layers shipped inside the lpips wheel."""
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / f"{net}.pth"


def backbone_path(net: str, options: Mapping[str, Any] | None) -> Path:
    from sdeval.models.fetch import resolve

    o = options or {}
    return resolve(NETS[net], o, progress=o.get("fetch_progress"), offline=o.get("offline"))


def load_lpips(net: str, backbone: Path, device: str) -> Any:
    """``lpips.LPIPS`` with the torchvision backbone state dict at ``backbone`` copied into its trunk
    (loaded once per process and device, through :func:`sdeval.models.loaded.load_once`)."""
    from sdeval.models.loaded import load_once

    key = (net, str(Path(backbone).resolve()), device)
    return load_once("lpips", key, lambda: _build_lpips(net, Path(backbone), device))


def _build_lpips(net: str, backbone: Path, device: str) -> Any:
    import lpips
    import torch
    import torchvision

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated ``pretrained=False``
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        tv = torchvision.models.alexnet(weights=None) if net == "alex" else torchvision.models.vgg16(weights=None)
    try:
        state = torch.load(str(backbone), map_location="cpu", weights_only=True)
        tv.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - a bad file must name itself
        raise ModelMissingError(
            f"{backbone} is not a torchvision {'AlexNet' if net == 'alex' else 'VGG-16'} state dict: {exc}\n"
            f"  how to get it: run `sdeval models fetch {NETS[net]}`") from exc
    slices = [getattr(model.net, f"slice{i + 1}") for i in range(len(_SLICES[net]))]
    for sl, (lo, hi) in zip(slices, _SLICES[net]):
        for idx in range(lo, hi):
            sl._modules[str(idx)].load_state_dict(tv.features[idx].state_dict())
    return model.to(device).eval()


def to_input(image: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (3, size, size) float32 in [-1, 1] (bicubic resize, lpips.im2tensor scaling)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if im.size != (size, size):
        im = im.resize((size, size), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.float32).transpose(2, 0, 1)
    return np.ascontiguousarray(arr / np.float32(255.0 / 2.0) - np.float32(1.0))


def trunk_features(model: Any, x: Any) -> list[Any]:
    """Unit-normalised trunk activations per layer, as LPIPS.forward computes them."""
    import lpips

    outs = model.net.forward(model.scaling_layer(x))
    return [lpips.normalize_tensor(o) for o in outs]


def pair_distances(model: Any, feats_a: Sequence[Any], feats_b: Sequence[Any]) -> Any:
    """LPIPS of aligned rows of two feature lists: sum over layers of the spatial mean of lin(diff²)."""
    total = 0
    for lin, fa, fb in zip(model.lins, feats_a, feats_b):
        total = total + lin((fa - fb) ** 2).mean([2, 3], keepdim=True)
    return total.reshape(-1)


class _LpipsBase(FeatureExtractor):
    """What both LPIPS features share: settings, backbone weights, device, model, identity."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self.settings = LpipsSettings.from_options(self.options)
        self._backbone: Path | None = None
        self._device: str | None = None

    def backbone_path(self) -> Path:
        if self._backbone is None:
            self._backbone = backbone_path(self.settings.net, self.options)
        return self._backbone

    def device(self) -> str:
        if self._device is None:
            from sdeval.core.device import choose_device

            self._device = choose_device(self.settings.device)
        return self._device

    def model(self) -> Any:
        return load_lpips(self.settings.net, self.backbone_path(), self.device())

    def check_available(self) -> None:
        self.backbone_path()
        self.device()

    def lpips_identity(self) -> dict[str, Any]:
        """The LPIPS model and input: net, size, both weight files, the linear layers' LPIPS version."""
        from sdeval.models.hashes import weights_sha256

        return {"net": self.settings.net, "size": self.settings.size, "backbone_id": NETS[self.settings.net],
                "backbone_sha256": weights_sha256(self.backbone_path()),
                "linear_sha256": weights_sha256(linear_weights_path(self.settings.net)),
                "lpips_version": LPIPS_VERSION, "input": "bicubic resize from uint8, scaled to [-1, 1]"}

    def identity(self) -> dict[str, Any]:
        """The feature's own id and version beside (never overwritten by) the LPIPS identity."""
        return {"id": self.id, "version": self.version, **self.lpips_identity()}

    def cache_key(self) -> str | None:
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()
        return f"{self.id}/v{self.version}/{self.settings.net}/{self.settings.size}/{digest[:16]}"

    def _tensor(self, arrays: Sequence[np.ndarray]) -> Any:
        import torch

        return torch.from_numpy(np.stack(arrays)).to(self.device())


# -- pairing generated images with reference images ---------------------------------------------------

class ReferenceIndex:
    """Finds the reference image of a generated one: pairs file, same relative path, same stem.

    The reference folder's images are listed by :func:`sdeval.inputs.discovery.discover`, as any
    input folder is (same suffixes, same order, result folders skipped).
    """

    def __init__(self, ref_dir: str | None, generated_roots: Sequence[str] = (),
                 pairs_file: str | None = None) -> None:
        from sdeval.inputs.discovery import discover

        self.ref_dir = Path(ref_dir) if ref_dir else None
        self.roots = [Path(r) for r in generated_roots if Path(r).is_dir()]
        self.pairs: dict[str, str] = read_pairs(Path(pairs_file)) if pairs_file else {}
        self.by_stem: dict[str, list[str]] = {}
        if self.ref_dir is not None:
            if not self.ref_dir.is_dir():
                raise InputError(f"reference folder not found: {self.ref_dir}")
            for item in discover([str(self.ref_dir)]).items:
                self.by_stem.setdefault(Path(item.path).stem, []).append(item.path)

    def find(self, path: str) -> str | None:
        key = os.path.normpath(os.path.abspath(path))
        if key in self.pairs:
            return self.pairs[key]
        if self.ref_dir is None:
            return None
        p = Path(path)
        for root in self.roots:
            try:
                rel = p.resolve().relative_to(root.resolve())
            except ValueError:
                continue
            candidate = self.ref_dir / rel
            if candidate.is_file():
                return str(candidate)
        found = self.by_stem.get(p.stem, [])
        return found[0] if len(found) == 1 else None


def read_pairs(path: Path) -> dict[str, str]:
    """A CSV (header ``path,reference``) or JSONL file of pairs; relative paths are relative to it."""
    if not path.is_file():
        raise InputError(f"pairs file not found: {path}")
    rows: list[tuple[int, Mapping[str, Any]]] = []
    if path.suffix.lower() == ".jsonl":
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{i}: invalid JSON: {exc.msg}") from exc
    else:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or {"path", "reference"} - set(reader.fieldnames):
                raise InputError(f"{path}: a pairs file needs the columns 'path' and 'reference'")
            rows = [(reader.line_num, r) for r in reader]
    out: dict[str, str] = {}
    for line, row in rows:
        if not isinstance(row, Mapping) or not row.get("path") or not row.get("reference"):
            raise InputError(f"{path}:{line}: each pair needs 'path' and 'reference'")
        gen, ref = Path(str(row["path"])), Path(str(row["reference"]))
        gen = gen if gen.is_absolute() else path.parent / gen
        ref = ref if ref.is_absolute() else path.parent / ref
        out[os.path.normpath(os.path.abspath(gen))] = str(ref)
    return out


class LpipsRefPair(_LpipsBase):
    """LPIPS distance between each image and its paired reference (a float per image).

    Options: ``lpips_ref_dir`` and/or ``lpips_pairs`` (a CSV/JSONL of path,reference),
    ``lpips_generated_roots`` (folders the generated paths are relative to), ``lpips_net``,
    ``lpips_size``, ``device``, ``batch_size``, ``offline``, ``model_paths``.
    """

    id: ClassVar[str] = "lpips_ref_pair"
    version: ClassVar[str] = "1"
    option_names: ClassVar[tuple[str, ...]] = OPTION_NAMES
    has_companion: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._index: ReferenceIndex | None = None
        self._lock = threading.Lock()

    def index(self) -> ReferenceIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    ref_dir, pairs = self.options.get("lpips_ref_dir"), self.options.get("lpips_pairs")
                    if not ref_dir and not pairs:
                        raise UsageError("lpips_ref needs reference images: --ref DIR (matched by relative path "
                                         "or file name) or --lpips-pairs FILE (columns path,reference)")
                    self._index = ReferenceIndex(ref_dir, self.options.get("lpips_generated_roots") or (), pairs)
        return self._index

    def check_available(self) -> None:
        self.index()
        super().check_available()

    def companion_path(self, record: ImageRecord) -> str | None:
        return self.index().find(record.path)

    def prepare(self, image: np.ndarray | None, record: ImageRecord) -> Any:
        """Called (without pixels) when the image has no paired reference."""
        return Missing("no paired reference image (same relative path or file name under --ref, "
                       "or a row in --lpips-pairs)")

    def prepare_pair(self, image: np.ndarray, companion: Companion, record: ImageRecord) -> Any:
        if companion.image is None:
            return Missing(f"reference image {companion.path} unreadable: {companion.error}")
        size = self.settings.size
        return to_input(image, size), to_input(companion.image, size)

    def compute(self, prepared: Sequence[Any]) -> list[Any]:
        import torch

        out: list[Any] = list(prepared)
        todo = [i for i, p in enumerate(prepared) if isinstance(p, tuple)]
        if not todo:
            return out
        model = self.model()
        step = self.settings.batch_size
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            x0 = self._tensor([prepared[i][0] for i in chunk])
            x1 = self._tensor([prepared[i][1] for i in chunk])
            with torch.inference_mode():
                d = model(x0, x1).reshape(-1).double().cpu().numpy()
            for i, v in zip(chunk, d):
                out[i] = float(v)
        return out

    def protocol(self) -> dict[str, Any]:
        return {**self.identity(), "device": self.device(),
                "pairing": "pairs file, else same relative path under the reference folder, else unique file stem",
                "cache_key": self.cache_key()}


# -- per-image trunk features (diversity within groups) ------------------------------------------------

class LpipsTrunk(_LpipsBase):
    """The unit-normalised LPIPS trunk activations of each image (a list of (C, H, W) float32 arrays).

    Pair distances are formed from them by :meth:`mean_pairwise` exactly as ``LPIPS.forward``
    does, so a group of n images costs n trunk forwards, not n(n-1) ones.
    """

    id: ClassVar[str] = "lpips_trunk"
    version: ClassVar[str] = "1"
    option_names: ClassVar[tuple[str, ...]] = TRUNK_OPTION_NAMES

    def prepare(self, image: np.ndarray, record: ImageRecord) -> np.ndarray:
        return to_input(image, self.settings.size)

    def compute(self, prepared: Sequence[Any]) -> list[list[np.ndarray]]:
        import torch

        model = self.model()
        step = self.settings.batch_size
        out: list[list[np.ndarray]] = []
        with torch.inference_mode():
            for start in range(0, len(prepared), step):
                layers = [f.cpu().numpy() for f in trunk_features(model, self._tensor(prepared[start:start + step]))]
                out.extend([np.ascontiguousarray(layer[i]) for layer in layers]
                           for i in range(layers[0].shape[0]))
        return out

    def cache_key(self) -> str | None:
        """Never persisted: the activations are ~2.6 MB an image with AlexNet at 256 px (~32 MB with
        VGG), gigabytes for a nightly folder. The group values made from them are cached instead
        (:meth:`sdeval.metrics.lpips_metrics.LpipsDiversity.group_cache_key`)."""
        return None

    def identity_key(self) -> str:
        """What the activations depend on (weights, size, versions), for keys of values made from them."""
        return super().cache_key() or ""

    def mean_pairwise(self, features: Sequence[Sequence[np.ndarray]]) -> tuple[float, int]:
        """(mean LPIPS over all pairs, number of pairs) of ``features`` (n >= 2 images)."""
        import torch

        n = len(features)
        model = self.model()
        step = self.settings.batch_size
        with torch.inference_mode():
            full = [self._tensor([f[layer] for f in features]) for layer in range(len(features[0]))]
            ii, jj = np.triu_indices(n, k=1)
            total = 0.0
            for start in range(0, len(ii), step):
                a = torch.from_numpy(ii[start:start + step]).to(self.device())
                b = torch.from_numpy(jj[start:start + step]).to(self.device())
                d = pair_distances(model, [f[a] for f in full], [f[b] for f in full])
                total += float(d.double().sum())
        return total / len(ii), int(len(ii))

    def protocol(self) -> dict[str, Any]:
        return {**self.identity(), "device": self.device(), "output": "unit-normalised trunk activations per layer",
                "cache_key": self.cache_key()}
