"""The Python API: a trained run (or an ensemble) answering any photo, every face in it.

    import facemask
    model = facemask.load("runs/cpu-20261129-184531")        # device="auto", engine="auto" | "torch" | "onnx"
    faces = model.predict("photo.jpg")                        # also a PIL image, an RGB uint8 array, or bytes
    faces[0].box, faces[0].mask, faces[0].gender, faces[0].age
    faces[0].probs                                            # per attribute, and the 18 classes
    model.predict(["a.jpg", "b.png", pil_image])              # a list -> a list of face lists, batched

Each photo is decoded whole (EXIF-oriented, any colour mode), every face is found (runs trained with a face crop:
small faces too, see facemask.data.faces.detect_faces), and each face is framed as the run framed faces in
training (its margin, aspect, letterbox and size) before the faces of all photos go through the network in
batches. A run trained without a face crop answers the whole photo as one face (``status="whole_photo"``). A photo
where no face is found gets one entry with ``status="no_face"`` (or, with ``no_face="fallback"``, the answer for the
crop training used when its detector found nothing, ``status="fallback"``). Nothing is written to disk.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemask.data.faces import crop_box, detect_faces, fallback_crop, get_detector, masked_filter_sha1, trust_detector
from facemask.data.images import MAX_IMAGE_PIXELS, Decoding, ImageSource, crop_padded, fit, read_rgb
from facemask.data.labels import ATTRIBUTES, CLASS_NAMES, NUM_CLASSES, encode, marginals
from facemask.data.loaders import decoding_of
from facemask.errors import ConfigError, DataError, FacemaskError
from facemask.inference.engines import Engine, load_engine
from facemask.inference.predict import check_mask_weights, check_runs, check_weights, combine
from facemask.inference.tta import parse_tta
from facemask.io import cpu_count
from facemask.runs import BEST

STATUSES = ("face", "whole_photo", "fallback", "no_face", "error")
NO_FACE_MODES = ("report", "fallback")


@dataclass
class Face:
    """One answer: a face of a photo (or the whole photo, or a note that no face was found)."""

    status: str  # face | whole_photo | fallback | no_face | error
    box: tuple[int, int, int, int] | None = None  # left, top, right, bottom in photo pixels (exclusive)
    score: float | None = None  # the detector's score (None: no detection involved)
    mask: str | None = None  # wear | incorrect | not wear
    gender: str | None = None  # male | female
    age: str | None = None  # <30 | 30-59 | >=60
    label: int | None = None  # the competition's class id 0..17 (mask*6 + gender*3 + age)
    class_name: str | None = None
    probs: dict[str, Any] = field(default_factory=dict)  # {"mask": {name: p}, "gender": ..., "age": ..., "classes"}
    note: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["class"] = out.pop("label")
        out["box"] = list(self.box) if self.box is not None else None
        return out


@dataclass
class Photo:
    """A decoded photo's faces, ready for the network: one crop per face per run (uint8 H, W, 3)."""

    width: int
    height: int
    faces: list[Face]
    crops: list[list[np.ndarray]]  # [run][face]: only for faces that get an answer


@dataclass(frozen=True)
class Framing:
    """What preparing a photo needs from the runs (picklable, for worker processes)."""

    sizes: tuple[tuple[int, int], ...]
    decodings: tuple[Decoding, ...]
    detector: str  # "none": every run answers the whole photo
    min_face: int
    threshold: float | None
    no_face: str
    trusted: tuple[str, ...] = ()
    max_pixels: int = MAX_IMAGE_PIXELS  # larger photos are refused before they are decoded
    masked_faces: str | None = None  # a masked-face filter scanned beside hog's (faces.train_masked_filter)
    masked_sha1: str | None = None  # its content when load() read it: every thread and worker scans with that one


def prepare(source: ImageSource, framing: Framing) -> Photo:
    """Decode one photo, find its faces and frame each for every run (the CPU part of a prediction)."""
    img = read_rgb(source, max_pixels=framing.max_pixels)
    width, height = img.size
    if framing.detector == "none":
        crops = [[_whole_photo(img, size, decoding)] for size, decoding in zip(framing.sizes, framing.decodings)]
        return Photo(width, height, [Face("whole_photo", box=(0, 0, width, height),
                                          note="the run was trained without a face crop: the whole photo is "
                                               "answered as one face")], crops)
    for name in framing.trusted:
        trust_detector(name)
    boxes = detect_faces(np.asarray(img), get_detector(framing.detector, framing.masked_faces, framing.masked_sha1),
                         framing.min_face, framing.threshold)
    if boxes:
        faces = [Face("face", box=_int_box(b, width, height), score=round(float(b[4]), 4)) for b in boxes]
        crops = [[fit(crop_padded(img, crop_box(b, size[0] / size[1], d.face_margin)), size, d) for b in boxes]
                 for size, d in zip(framing.sizes, framing.decodings)]
        return Photo(width, height, faces, crops)
    if framing.no_face == "fallback":
        crops = [[fit(crop_padded(img, fallback_crop((height, width), size[0] / size[1], d.face_margin,
                                                     d.face_fallback)), size, d)]
                 for size, d in zip(framing.sizes, framing.decodings)]
        return Photo(width, height, [Face("fallback", note="no face found: answered for the crop training uses when "
                                                         "its detector finds none")], crops)
    return Photo(width, height, [Face("no_face", note="no face found")], [[] for _ in framing.sizes])


def _whole_photo(img, size: tuple[int, int], decoding: Decoding) -> np.ndarray:
    """The run's decoding of a whole photo (centre crop if the run had one, then stretch or letterbox)."""
    if decoding.crop is not None:
        ch, cw = min(img.height, decoding.crop[0]), min(img.width, decoding.crop[1])
        top, left = (img.height - ch) // 2, (img.width - cw) // 2
        img = img.crop((left, top, left + cw, top + ch))
    return fit(img, size, decoding)


def _int_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = (int(round(v)) for v in box[:4])
    return max(0, left), max(0, top), min(width, right), min(height, bottom)


def _prepare_job(args: tuple) -> Photo | str:
    source, framing = args
    try:
        return prepare(source, framing)
    except FacemaskError as err:
        return str(err)


class Model:
    """One run or a soft / hard ensemble of runs, ready to answer photos. Made by :func:`load`."""

    def __init__(self, engines: list[Engine], weights: np.ndarray, vote: str, tta: str | None, framing: Framing,
                 batch_size: int, mask_weights: np.ndarray | None = None):
        self.engines, self.weights, self.vote, self.tta = engines, weights, vote, tta
        self.mask_weights = mask_weights
        self.views = parse_tta(tta)
        self.framing = framing
        self.batch_size = batch_size

    @property
    def info(self) -> dict:
        """What the model is: runs, backbones, input sizes, engines, the face detector and the class names."""
        return {"runs": [str(e.run.path) for e in self.engines], "checkpoint": self.engines[0].run.checkpoint,
                "backbones": [e.cfg.model.name for e in self.engines],
                "input_sizes": [list(e.size) for e in self.engines], "engines": [e.name for e in self.engines],
                "weights": self.weights.tolist(), "vote": self.vote, "tta": self.tta or "",
                "mask_weights": None if self.mask_weights is None else self.mask_weights.tolist(),
                "face_detector": self.framing.detector, "min_face": self.framing.min_face,
                "face_threshold": self.framing.threshold, "no_face": self.framing.no_face,
                "masked_faces": self.framing.masked_faces, "classes": list(CLASS_NAMES),
                "attributes": {k: list(v) for k, v in ATTRIBUTES.items()}}

    def predict(self, images: ImageSource | Sequence[ImageSource], *, workers: int = 1,
                errors: str = "raise") -> list[Face] | list[list[Face]]:
        """The faces of one image (a path, encoded bytes, a PIL image or an RGB uint8 array), or a list of face
        lists for a list of images. ``workers`` > 1 decodes and detects in that many processes (0: one per core).
        ``errors="report"`` answers an unreadable image with one ``status="error"`` entry instead of raising."""
        single = not isinstance(images, (list, tuple))
        sources = [images] if single else list(images)
        photos = self.predict_photos(sources, workers=workers, errors=errors)
        faces = [photo.faces for photo in photos]
        return faces[0] if single else faces

    def predict_photos(self, sources: Sequence[ImageSource], *, workers: int = 1,
                       errors: str = "raise") -> list[Photo]:
        """Like :meth:`predict`, keeping each photo's size (``Photo.width``, ``.height``, ``.faces``)."""
        if errors not in ("raise", "report"):
            raise ConfigError(f"errors={errors!r}: expected raise or report")
        photos = self._prepare_all(sources, workers, errors)
        self.answer(photos)
        return photos

    def _prepare_all(self, sources: Sequence[ImageSource], workers: int, errors: str) -> list[Photo]:
        workers = cpu_count() if workers == 0 else workers
        jobs = [(source, self.framing) for source in sources]
        paths = all(isinstance(s, (str, Path)) for s in sources)
        if workers > 1 and len(jobs) > 1 and paths:  # only file names cross to the workers, not pixels
            with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
                results = list(pool.map(_prepare_job, jobs, chunksize=4))
        else:
            results = [_prepare_job(job) for job in jobs]
        photos = []
        for source, result in zip(sources, results):
            if isinstance(result, str):
                if errors == "raise":
                    raise DataError(result)
                result = Photo(0, 0, [Face("error", note=result)], [[] for _ in self.engines])
            photos.append(result)
        return photos

    @torch.inference_mode()
    def answer(self, photos: Sequence[Photo]) -> None:
        """Run the network on every face of ``photos`` in batches and fill in their answers."""
        answered = [(photo, face) for photo in photos for face in photo.faces if face.status in
                    ("face", "whole_photo", "fallback")]
        if not answered:
            return
        probs = []
        for index, engine in enumerate(self.engines):
            crops = np.stack([crop for photo in photos for crop in photo.crops[index]])
            probs.append(self._engine_probs(engine, crops))
        # soft: the weighted mean (the mask from its own weighting with mask_weights); hard: votes, then the mean
        scores = combine(probs, self.vote, self.weights, self.mask_weights)
        parts = marginals(scores / scores.sum(1, keepdims=True))
        # the class probabilities reported
        mean = scores if self.vote == "soft" else sum(w * p for w, p in zip(self.weights, probs))
        for row, (_, face) in enumerate(answered):
            # each attribute's answer is its most probable value, so that the answers agree with the bars a user
            # sees (with mask_weights, the mask runs' own most probable mask); the class is the three combined (the
            # competition's submission takes the top joint class, or with mask_weights the mask first: answers())
            chosen = [int(parts[attribute][row].argmax()) for attribute in ATTRIBUTES]
            face.label = int(encode(*chosen))
            face.class_name = CLASS_NAMES[face.label]
            face.mask, face.gender, face.age = (names[i] for names, i in zip(ATTRIBUTES.values(), chosen))
            face.probs = {attribute: {name: round(float(p), 6) for name, p in zip(names, parts[attribute][row])}
                          for attribute, names in ATTRIBUTES.items()}
            face.probs["classes"] = [round(float(p), 6) for p in mean[row]]

    def _engine_probs(self, engine: Engine, crops: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(crops), self.batch_size):
            images = torch.from_numpy(crops[start:start + self.batch_size]).permute(0, 3, 1, 2)
            probs = sum(engine(view(images)).float().softmax(1).cpu() for _, view in self.views)
            out.append((probs / len(self.views)).numpy())
        return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)


def load(runs: str | Path | Sequence[str | Path], *, device: str = "auto", engine: str = "auto",
         tta: str | None = None, checkpoint: str = BEST, weights: Sequence[float] | None = None,
         mask_weights: Sequence[float] | None = None, vote: str = "soft", precision: str = "fp32",
         min_face: int = 40, face_threshold: float | None = None, no_face: str = "report", batch_size: int = 64,
         trust_run_code: bool = False, masked_faces: str | Path | None = None) -> Model:
    """A run folder (or a list of them: an ensemble) ready to answer photos.

    ``engine``: auto (ONNX Runtime when the run has an up-to-date ``facemask export``, else PyTorch), torch or
    onnx. ``tta``: test-time views as for ``facemask predict`` (e.g. "flip"). ``min_face``: the smallest face
    width in pixels to look for; ``face_threshold``: the detector's score threshold (default: the detector's
    own). ``no_face``: report (an entry saying so) or fallback (answer the crop training used when no face was
    found). A run's saved config may name a face detector to import only with ``trust_run_code``.
    ``masked_faces``: a masked-face filter file (``facemask train-detector``) scanned beside ``hog``'s bare-face one.
    ``weights``: one per run (default equal); ``mask_weights`` (soft vote only): the mask answer's own weighting of
    the runs, gender and age keeping ``weights`` (see :func:`facemask.inference.predict.combine`).
    """
    names = [runs] if isinstance(runs, (str, Path)) else list(runs)
    parse_tta(tta)
    if vote not in ("soft", "hard"):
        raise ConfigError(f"unknown vote {vote!r} (known: soft, hard)")
    if no_face not in NO_FACE_MODES:
        raise ConfigError(f"unknown no_face={no_face!r} (known: {', '.join(NO_FACE_MODES)})")
    if min_face < 8:
        raise ConfigError(f"min_face={min_face}: faces smaller than 8 pixels cannot be found")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    normalised = check_weights(weights, len(names))
    mask_weights = check_mask_weights(mask_weights, len(names), vote)
    opened = check_runs(names, checkpoint)
    engines = [load_engine(run, engine, device, precision, checkpoint) for run in opened]
    detectors = {e.cfg.data.face_crop for e in engines}
    if len(detectors) > 1:
        raise ConfigError("the runs of an ensemble must agree on data.face_crop to answer photos (found "
                          f"{', '.join(sorted(detectors))}): each face is found once and framed for every run")
    detector = detectors.pop()
    trusted: tuple[str, ...] = ()
    masked_sha1 = None
    if masked_faces is not None:
        masked_faces = str(Path(masked_faces).resolve())
        if detector != "hog":
            raise ConfigError(f"masked_faces: a masked-face filter works with runs trained with data.face_crop=hog, "
                              f"not {detector!r}")
        masked_sha1 = masked_filter_sha1(masked_faces)  # each thread and worker checks it still loads this file
    if detector != "none":
        if trust_run_code:
            trust_detector(detector)
            trusted = (detector,)
        get_detector(detector, masked_faces, masked_sha1)  # a detector that cannot load (or is not trusted) fails here
    decodings = tuple(decoding_of(e.cfg, load_detector=False) for e in engines)
    framing = Framing(tuple(e.size for e in engines), decodings, detector, min_face, face_threshold, no_face, trusted,
                      masked_faces=masked_faces, masked_sha1=masked_sha1)
    return Model(engines, normalised, vote, tta, framing, batch_size, mask_weights)
