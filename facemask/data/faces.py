"""Face detection for the optional face-crop step (``data.face_crop``), behind a small pluggable interface.

A detector is any callable ``detector(rgb) -> [(left, top, right, bottom, score), ...]`` in the pixel coordinates
of the (H, W, 3) uint8 array it is given, optionally with a ``cache_id`` attribute (see :func:`detector_id`).
``hog`` is dlib's built-in HOG frontal-face detector (``pip install dlib-bin``; it needs no model file, so it works
offline). A stronger detector plugs in by name with
:func:`register_detector`, or as ``data.face_crop=package.module:factory`` where ``factory()`` returns a detector.

:func:`face_box` turns the best-scoring detection into the crop box (the face plus a margin, at the network
input's aspect ratio); when nothing is found it falls back to where the face usually is, and says so, so the
detection rate can be measured (``facemask check-data --faces``). Detection may run in worker processes: register
a plug-in in a module that is imported on start-up, or name it as ``module:factory``.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from facemask.errors import ConfigError

Box = tuple[float, float, float, float, float]  # left, top, right, bottom, score
Detector = Callable[[np.ndarray], list[Box]]

DETECTORS: dict[str, Callable[[], Detector]] = {}
_loaded: dict[str, Detector] = {}  # one detector per name per process (workers build their own)


def register_detector(name: str, factory: Callable[[], Detector]) -> None:
    """Make ``data.face_crop=name`` use ``factory()``."""
    DETECTORS[name] = factory


class HogDetector:
    """dlib's HOG + linear SVM frontal-face detector (no model file needed).

    It finds faces of about 80 px and up, so the photo is resized to ``side`` px on its shorter side before
    detecting (small photos are enlarged, large ones reduced for speed); if nothing is found, it tries once more
    with dlib's 2x upsampling, for faces that are small in the frame.
    """

    def __init__(self, side: int = 240, threshold: float = -0.8):
        try:
            import dlib
        except ImportError as err:
            raise ConfigError("data.face_crop=hog needs dlib: pip install dlib-bin") from err
        self.detector = dlib.get_frontal_face_detector()
        self.side = side
        self.threshold = threshold  # dlib's adjust_threshold: masked faces score low; -0.8 finds 96% on the stand-in
        self.cache_id = f"hog-dlib{dlib.__version__}-side{side}-threshold{threshold}"

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        height, width = rgb.shape[:2]
        scale = self.side / min(height, width)
        small = np.asarray(Image.fromarray(rgb).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                                       Image.BILINEAR))
        for upsample in (0, 1):
            rects, scores, _ = self.detector.run(np.ascontiguousarray(small), upsample, self.threshold)
            if rects:
                return [(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale, float(s))
                        for r, s in zip(rects, scores)]
        return []


register_detector("hog", HogDetector)


def get_detector(name: str) -> Detector:
    """The detector registered as ``name``, or ``module:factory`` imported; built once per process."""
    if name not in _loaded:
        if name in DETECTORS:
            factory = DETECTORS[name]
        elif ":" in name:
            module, _, attr = name.partition(":")
            try:
                factory = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                raise ConfigError(f"data.face_crop={name!r}: cannot import {attr} from {module}: {err}") from err
        else:
            raise ConfigError(f"unknown option data.face_crop={name!r} (known: none, {', '.join(sorted(DETECTORS))},"
                              " or module:factory)")
        _loaded[name] = factory()
    return _loaded[name]


FALLBACK_CENTRE = (0.5, 0.44)  # where the competition photos have the face: x, y as fractions of width, height


def face_box(rgb: np.ndarray, detector: Detector, aspect: float, margin: float,
             fallback: float) -> tuple[tuple[int, int, int, int], bool]:
    """((left, top, right, bottom), found): the crop around the best-scoring face found in ``rgb``.

    The face box is widened by ``margin`` of its size on every side, then grown to ``aspect`` (= height / width
    of the network input) around its centre; it may reach outside the photo (the caller pads). With no face, the
    photo is assumed to be framed like the competition's: a square face ``fallback`` x the photo's shorter side
    wide, centred horizontally at 44% of the height, so that photos with and without a detection are cropped
    alike (a different crop for missed faces, which are mostly masked, would be a cue for the mask label).
    """
    height, width = rgb.shape[:2]
    boxes = detector(rgb)
    if boxes:
        left, top, right, bottom, _ = max(boxes, key=lambda b: b[4])
        cx, cy, face_w, face_h = (left + right) / 2, (top + bottom) / 2, right - left, bottom - top
    else:
        cx, cy = FALLBACK_CENTRE[0] * width, FALLBACK_CENTRE[1] * height
        face_w = face_h = fallback * min(width, height)
    crop_w, crop_h = face_w * (1 + 2 * margin), face_h * (1 + 2 * margin)
    crop_w, crop_h = max(crop_w, crop_h / aspect), max(crop_h, crop_w * aspect)  # grow to the input's aspect
    crop_w, crop_h = max(1, round(crop_w)), max(1, round(crop_h))
    left, top = round(cx - crop_w / 2), round(cy - crop_h / 2)
    return (left, top, left + crop_w, top + crop_h), bool(boxes)


def detector_id(name: str) -> str:
    """What identifies a detector's output in the cache key: its ``cache_id`` attribute (name, version and
    settings), or its name. A plug-in whose results change should change its ``cache_id``."""
    return str(getattr(get_detector(name), "cache_id", name))
