"""Faces found by OpenCV's Haar cascade (``face_signals``), behind the ``sdeval[faces]`` extra.

A bad face (blurred, tiny, half-formed) is the failure face restoration fixes, so the face
metrics feed ``restore_face`` rules. OpenCV < 5 ships the frontal-face cascade
(``cv2.data.haarcascades``); 5.x has neither ``CascadeClassifier`` nor the XML files.

Detection runs in :meth:`FaceSignals.prepare` (the decode threads) on a grey copy resized to a
fixed short side, so counts and sizes mean the same at 512 and 1024 px. ``CascadeClassifier``
is not thread-safe: each thread loads its own, once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypedDict

import numpy as np

from sdeval.core.errors import MetricUnavailableError
from sdeval.features.base import FeatureExtractor
from sdeval.inputs.record import ImageRecord

EXTRA = "faces"
INSTALL_HINT = "pip install 'sdeval[faces]'  (opencv-python-headless>=4.8,<5)"
CASCADE = "haarcascade_frontalface_default.xml"
#: short side of the grey image the cascade scans (faces scale with the image, not the pixels)
ANALYSIS_SHORT_SIDE = 384
#: smallest face reported, as a fraction of the short side (smaller faces are background people)
MIN_FACE = 0.08
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
#: side of the square the face box is resized to before its sharpness is measured
FACE_PATCH = 128


class Face(TypedDict):
    """One detection, in original-image pixels."""

    x: int
    y: int
    w: int
    h: int
    #: the cascade's last-stage sum (``detectMultiScale3`` level weight): higher is surer
    confidence: float
    #: variance of the Laplacian of the face box resized to ``FACE_PATCH`` px
    sharpness: float


class FaceInfo(TypedDict):
    """Every face of one image, largest first, and the image size they refer to.

    Plain JSON (not a class) so the feature cache can store it.
    """

    width: int
    height: int
    faces: list[Face]


def largest(info: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The largest face of a :class:`FaceInfo`, or None."""
    faces = info.get("faces") or []
    return faces[0] if faces else None


def _import_cv2(metric: str = "face_count") -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise MetricUnavailableError(
            metric, f"face detection needs OpenCV, which is not installed ({exc})", INSTALL_HINT) from exc
    return cv2


def cascade_path(metric: str = "face_count") -> Path:
    """The Haar cascade file shipped with OpenCV; raises if this OpenCV has none (5.x)."""
    cv2 = _import_cv2(metric)
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder or not hasattr(cv2, "CascadeClassifier"):
        raise MetricUnavailableError(
            metric, f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 removed them)", INSTALL_HINT)
    path = Path(folder) / CASCADE
    if not path.is_file():
        raise MetricUnavailableError(metric, f"the Haar cascade {path} is missing", INSTALL_HINT)
    return path


class FaceSignals(FeatureExtractor):
    """Frontal faces per image (:class:`FaceInfo`), found in the decode threads."""

    id: ClassVar[str] = "face_signals"
    version: ClassVar[str] = "1"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self._local = threading.local()

    def check_available(self) -> None:
        self._classifier()

    def _classifier(self) -> Any:
        """This thread's cascade (``CascadeClassifier`` must not be shared between threads)."""
        clf = getattr(self._local, "classifier", None)
        if clf is None:
            cv2 = _import_cv2()
            path = cascade_path()
            clf = cv2.CascadeClassifier(str(path))
            if clf.empty():
                raise MetricUnavailableError("face_count", f"OpenCV could not load {path}", INSTALL_HINT)
            self._local.classifier = clf
        return clf

    def prepare(self, image: np.ndarray, record: ImageRecord) -> FaceInfo:
        return detect_faces(image, self._classifier())

    def protocol(self) -> dict[str, Any]:
        cv2 = _import_cv2()
        return {
            "id": self.id,
            "version": self.version,
            "detector": f"OpenCV Haar cascade {CASCADE}",
            "opencv": cv2.__version__,
            "analysis_short_side": ANALYSIS_SHORT_SIDE,
            "scale_factor": SCALE_FACTOR,
            "min_neighbors": MIN_NEIGHBORS,
            "min_face": f"{MIN_FACE} of the short side",
            "confidence": "detectMultiScale3 level weight (outputRejectLevels=True)",
            "sharpness": f"variance of the Laplacian of the face box resized to {FACE_PATCH} px",
        }


def detect_faces(image: np.ndarray, classifier: Any) -> FaceInfo:
    """Run the cascade on a grey copy of ``image`` at :data:`ANALYSIS_SHORT_SIDE`."""
    cv2 = _import_cv2()
    h, w = image.shape[:2]
    grey_full = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    scale = ANALYSIS_SHORT_SIDE / min(h, w)
    if scale < 1.0:
        grey = cv2.resize(grey_full, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    else:  # small images are scanned as they are
        grey, scale = grey_full, 1.0
    side = max(1, int(MIN_FACE * min(grey.shape)))
    boxes, _levels, weights = classifier.detectMultiScale3(
        grey, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(side, side),
        outputRejectLevels=True)
    faces: list[Face] = []
    for (x, y, bw, bh), weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).ravel()):
        x0, y0 = int(round(x / scale)), int(round(y / scale))
        x1, y1 = min(w, int(round((x + bw) / scale))), min(h, int(round((y + bh) / scale)))
        patch = grey_full[y0:y1, x0:x1]
        sharp = float("nan")
        if patch.size:
            patch = cv2.resize(patch, (FACE_PATCH, FACE_PATCH), interpolation=cv2.INTER_AREA)
            sharp = float(cv2.Laplacian(patch, cv2.CV_32F).var())
        faces.append(Face(x=x0, y=y0, w=x1 - x0, h=y1 - y0, confidence=float(weight), sharpness=sharp))
    faces.sort(key=lambda f: f["w"] * f["h"], reverse=True)
    return FaceInfo(width=w, height=h, faces=faces)
