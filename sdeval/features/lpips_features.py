"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with its backbone from sdeval's registry.

``lpips.LPIPS(pretrained=True)`` would download torchvision's ImageNet backbone itself; sdeval
builds it with ``pnet_rand=True`` (the perceptual linear layers still load from the wheel's
``weights/v0.1/<net>.pth``) and then copies the torchvision backbone, obtained through the model
registry (``lpips-alex`` / ``lpips-vgg``: cache dir, offline mode, ``--model-path``), into the
trunk's slices. The numbers are therefore the package's own forward.

Images are compared at ``lpips_size`` x ``lpips_size`` (default 256, bicubic from uint8) scaled to
[-1, 1], as ``lpips.im2tensor`` does: LPIPS needs equal sizes and is resolution dependent, so the
size is part of the protocol.

Two uses:

* ``lpips_ref_pair`` (a feature, per image): the distance to a paired reference image, matched
  by a pairs file, by the same relative path under the reference folder, or by file stem;
* :func:`group_diversity`: mean pairwise LPIPS within a group of images (one prompt across
  seeds). The trunk runs once per image; pair distances are formed from the normalised layer
  features exactly as ``LPIPS.forward`` does.
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
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from sdeval.core.errors import InputError, ModelMissingError, UsageError
from sdeval.features.base import FeatureExtractor
from sdeval.inputs.record import ImageRecord
from sdeval.features.base import Missing

NETS = {"alex": "lpips-alex", "vgg": "lpips-vgg"}
#: torchvision ``features`` index ranges of each LPIPS slice (lpips.pretrained_networks)
_SLICES = {"alex": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
           "vgg": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))}
DEFAULT_SIZE = 256
OPTION_NAMES = ("lpips_net", "lpips_size", "lpips_ref_dir", "lpips_pairs", "device", "batch_size",
                "offline", "model_paths")

_MODELS: dict[tuple[str, str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


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


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device '{name}' requested but CUDA is not available")
    return name


def linear_weights_path(net: str) -> Path:
    """The perceptual linear layers shipped inside the lpips wheel."""
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / f"{net}.pth"


def backbone_path(net: str, options: Mapping[str, Any] | None) -> Path:
    from sdeval.models.fetch import resolve

    o = options or {}
    return resolve(NETS[net], o, progress=o.get("fetch_progress"), offline=o.get("offline"))


def load_lpips(net: str, backbone: Path, device: str) -> Any:
    """``lpips.LPIPS`` with the torchvision backbone state dict at ``backbone`` copied into its trunk."""
    import torch

    key = (net, str(Path(backbone).resolve()), device)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        import lpips
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
        model = model.to(device).eval()
        _MODELS[key] = model
        return model


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


class _LpipsBase:
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
            self._device = _device(self.settings.device)
        return self._device

    def model(self) -> Any:
        return load_lpips(self.settings.net, self.backbone_path(), self.device())

    def lpips_identity(self) -> dict[str, Any]:
        from sdeval.models.hashes import weights_sha256

        return {"net": self.settings.net, "size": self.settings.size, "backbone_id": NETS[self.settings.net],
                "backbone_sha256": weights_sha256(self.backbone_path()),
                "linear_sha256": weights_sha256(linear_weights_path(self.settings.net)),
                "version": "0.1", "input": "bicubic resize from uint8, scaled to [-1, 1]"}


# -- pairing generated images with reference images ---------------------------------------------------

class ReferenceIndex:
    """Finds the reference image of a generated one: pairs file, same relative path, same stem."""

    def __init__(self, ref_dir: str | None, generated_roots: Sequence[str] = (),
                 pairs_file: str | None = None) -> None:
        from sdeval.inputs.discovery import IMAGE_SUFFIXES

        self.ref_dir = Path(ref_dir) if ref_dir else None
        self.roots = [Path(r) for r in generated_roots if Path(r).is_dir()]
        self.pairs: dict[str, str] = read_pairs(Path(pairs_file)) if pairs_file else {}
        self.by_stem: dict[str, list[str]] = {}
        if self.ref_dir is not None:
            if not self.ref_dir.is_dir():
                raise InputError(f"reference folder not found: {self.ref_dir}")
            for dirpath, dirnames, filenames in os.walk(self.ref_dir):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    p = Path(dirpath) / name
                    if p.suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                        self.by_stem.setdefault(p.stem, []).append(str(p))

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


_SHA_MEMO: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def _file_sha(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        if key in _SHA_MEMO:
            return _SHA_MEMO[key]
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    with _SHA_LOCK:
        _SHA_MEMO[key] = digest
    return digest


class LpipsRefPair(_LpipsBase, FeatureExtractor):
    """LPIPS distance between each image and its paired reference (a float per image).

    Options: ``lpips_ref_dir`` and/or ``lpips_pairs`` (a CSV/JSONL of path,reference),
    ``lpips_generated_roots`` (folders the generated paths are relative to), ``lpips_net``,
    ``lpips_size``, ``device``, ``batch_size``, ``offline``, ``model_paths``.
    """

    id: ClassVar[str] = "lpips_ref_pair"
    version: ClassVar[str] = "1"
    option_names: ClassVar[tuple[str, ...]] = OPTION_NAMES

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
        self.backbone_path()
        self.device()

    def content_key(self, record: ImageRecord) -> str | None:
        ref = self.index().find(record.path)
        ref_sha = _file_sha(ref) if ref else None
        if not record.sha256 or not ref_sha:
            return None
        return f"{record.sha256}+{ref_sha}"

    def prepare(self, image: np.ndarray, record: ImageRecord) -> Any:
        from sdeval.core.errors import DecodeError
        from sdeval.inputs.decode import decode

        ref = self.index().find(record.path)
        if ref is None:
            return Missing("no paired reference image (same relative path or file name under --ref, "
                           "or a row in --lpips-pairs)")
        try:
            ref_rgb = decode(Path(ref).read_bytes())
        except (OSError, DecodeError) as exc:
            return Missing(f"reference image {ref} unreadable: {exc}")
        size = self.settings.size
        return to_input(image, size), to_input(ref_rgb, size)

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
            x0 = torch.from_numpy(np.stack([prepared[i][0] for i in chunk])).to(self.device())
            x1 = torch.from_numpy(np.stack([prepared[i][1] for i in chunk])).to(self.device())
            with torch.inference_mode():
                d = model(x0, x1).reshape(-1).double().cpu().numpy()
            for i, v in zip(chunk, d):
                out[i] = float(v)
        return out

    def cache_key(self) -> str | None:
        parts = {"id": self.id, "version": self.version, **self.lpips_identity()}
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return f"lpips_ref/{self.settings.net}/{self.settings.size}/{digest[:16]}"

    def protocol(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, **self.lpips_identity(), "device": self.device(),
                "pairing": "pairs file, else same relative path under the reference folder, else unique file stem",
                "cache_key": self.cache_key()}


# -- diversity within groups ---------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupDiversity:
    """Mean pairwise LPIPS of one group (one prompt across seeds)."""

    key: str
    images: int
    pairs: int
    mean: float | None
    sampled: bool = False
    errors: int = 0


class LpipsDiversityRunner(_LpipsBase):
    """Computes :class:`GroupDiversity` for groups of image paths (a second, group-wise pass).

    Groups are only known once every image's metadata was read, and pairs need both images, so
    this runs after the main pass: the trunk once per image of a group, all pairs from the
    normalised features. Groups larger than ``lpips_max_group`` (default 64) use a seeded sample of
    that many images, which bounds memory and time per group.
    """

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.max_group = int(self.options.get("lpips_max_group") or 64)
        self.seed = int(self.options.get("lpips_seed") or 0)

    def check_available(self) -> None:
        self.backbone_path()
        self.device()

    def run(self, groups: Iterable[tuple[str, Sequence[str]]], *, workers: int = 4,
            max_pixels: int | None = None, done: Callable[[GroupDiversity], None] | None = None
            ) -> list[GroupDiversity]:
        from concurrent.futures import ThreadPoolExecutor

        out = []
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sdeval-lpips") as pool:
            for key, paths in groups:
                result = self._group(key, list(paths), pool, max_pixels)
                out.append(result)
                if done is not None:
                    done(result)
        return out

    def _load(self, path: str, max_pixels: int | None) -> np.ndarray | None:
        from sdeval.core.errors import DecodeError
        from sdeval.inputs.decode import DecodeOptions, decode

        try:
            opts = DecodeOptions(max_pixels=max_pixels) if max_pixels else DecodeOptions()
            return to_input(decode(Path(path).read_bytes(), opts), self.settings.size)
        except (OSError, DecodeError):
            return None

    def _group(self, key: str, paths: list[str], pool: Any, max_pixels: int | None) -> GroupDiversity:
        import torch

        sampled = False
        if len(paths) > self.max_group:
            rng = np.random.default_rng([self.seed, int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)])
            paths = [paths[i] for i in sorted(rng.choice(len(paths), self.max_group, replace=False))]
            sampled = True
        arrays = list(pool.map(lambda p: self._load(p, max_pixels), paths))
        good = [a for a in arrays if a is not None]
        errors = len(arrays) - len(good)
        n = len(good)
        if n < 2:
            return GroupDiversity(key, n, 0, None, sampled, errors)
        model = self.model()
        step = self.settings.batch_size
        layers: list[list[Any]] = []
        with torch.inference_mode():
            for start in range(0, n, step):
                x = torch.from_numpy(np.stack(good[start:start + step])).to(self.device())
                feats = trunk_features(model, x)
                if not layers:
                    layers = [[f] for f in feats]
                else:
                    for acc, f in zip(layers, feats):
                        acc.append(f)
            full = [torch.cat(parts) if len(parts) > 1 else parts[0] for parts in layers]
            ii, jj = np.triu_indices(n, k=1)
            total = 0.0
            for start in range(0, len(ii), step):
                a = torch.from_numpy(ii[start:start + step]).to(self.device())
                b = torch.from_numpy(jj[start:start + step]).to(self.device())
                d = pair_distances(model, [f[a] for f in full], [f[b] for f in full])
                total += float(d.double().sum())
        pairs = len(ii)
        return GroupDiversity(key, n, pairs, total / pairs, sampled, errors)

    def protocol(self) -> dict[str, Any]:
        return {"id": "lpips_diversity", **self.lpips_identity(), "device": self.device(),
                "pairs": "all pairs within a group", "max_group": self.max_group, "seed": self.seed}
