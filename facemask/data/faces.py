"""Face detection for the optional face-crop step (``data.face_crop``), behind a small pluggable interface.

A detector is any callable ``detector(rgb) -> [(left, top, right, bottom, score), ...]`` in the pixel coordinates
of the (H, W, 3) uint8 array it is given, optionally with a ``cache_id`` attribute (see :func:`detector_id`).
``hog`` is dlib's built-in HOG frontal-face detector (``pip install dlib-bin``; it needs no model file, so it works
offline). A stronger detector plugs in by name with :func:`register_detector`, as an installed entry point in
the ``facemask.detectors`` group, or as ``data.face_crop=package.module:factory`` where ``factory()`` returns a
detector.

Trust: a ``module:factory`` name is imported only when the user named it (their own config or command line:
:func:`trust_detector`), never because a run folder's saved config says so; a shared or downloaded run is safe to
predict with. ``--trust-run-code`` lets a run's own name through.

:func:`face_box` turns the best-scoring detection into the crop box (the face plus a margin, at the network
input's aspect ratio); when nothing is found it falls back to where the face usually is, and says so, so the
detection rate can be measured (``facemask check-data --faces``). :func:`detect_faces` finds every face of a photo
of any size (``facemask predict RUN photo.jpg``), small ones included, and :func:`crop_box` frames each one as
training framed its face. Detection may run in worker processes: register a plug-in in a module that is imported
on start-up, install it as an entry point, or name it as ``module:factory``.
"""
from __future__ import annotations

import hashlib
import importlib
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from facemask.errors import ConfigError

Box = tuple[float, float, float, float, float]  # left, top, right, bottom, score
Detector = Callable[[np.ndarray], list[Box]]

DETECTORS: dict[str, Callable[[], Detector]] = {}
ENTRY_POINTS = "facemask.detectors"  # installed plug-ins: [project.entry-points."facemask.detectors"] name = "m:f"
# One detector per name per thread: dlib's detector object is not safe to share between threads (two threads
# scanning with one crash the process; serve detects in a thread pool), and a plug-in need not be either.
_loaded = threading.local()
_trusted: set[str] = set()  # module:factory names the user gave (their config, their command line)
HOG_THRESHOLD = -0.8  # dlib's adjust_threshold for the bare-face filter (docs/results.md "Finding faces")
MASKED_THRESHOLD = -0.1  # a masked-face filter's own score threshold at HOG_THRESHOLD (chosen on --seed 1)


def register_detector(name: str, factory: Callable[[], Detector]) -> None:
    """Make ``data.face_crop=name`` use ``factory()``."""
    DETECTORS[name] = factory


def trust_detector(name: str) -> None:
    """Allow ``get_detector`` to import ``name`` when it is a ``module:factory`` path (the user named it)."""
    if ":" in name:
        _trusted.add(name)


def trusted_detectors() -> list[str]:
    """The names allowed by :func:`trust_detector` in this process (passed on to worker processes)."""
    return sorted(_trusted)


class HogDetector:
    """dlib's HOG + linear SVM frontal-face detector (no model file needed).

    It finds faces of about 80 px and up, so the photo is resized to ``side`` px on its shorter side before
    detecting (small photos are enlarged, large ones reduced for speed); if nothing is found, it tries once more
    with dlib's 2x upsampling, for faces that are small in the frame.
    """

    def __init__(self, side: int = 240, threshold: float = HOG_THRESHOLD, masked: str | Path | None = None,
                 masked_sha1: str | None = None, masked_threshold: float = MASKED_THRESHOLD):
        try:
            import dlib
        except ImportError as err:
            raise ConfigError("data.face_crop=hog needs dlib: pip install dlib-bin") from err
        self.detector = dlib.get_frontal_face_detector()
        self.side = side
        self.threshold = threshold  # dlib's adjust_threshold: masked faces score low; -0.8 finds 96% on the stand-in
        self.cache_id = f"hog-dlib{dlib.__version__}-side{side}-threshold{threshold}"
        # A masked-face filter (train_masked_filter) scans beside dlib's bare-face one. Its scores are shifted by a
        # fixed offset so that one threshold serves both, however it is given: at the default -0.8 a masked box
        # needs its own score masked_threshold, and every other threshold moves both bars together.
        self.masked, self.masked_sha1, self.offset = None, None, masked_threshold - HOG_THRESHOLD
        if masked is not None:
            self.masked, self.masked_sha1 = load_masked_filter(masked, masked_sha1)
            self.cache_id += f"-masked{self.masked_sha1[:12]}-{masked_threshold}"

    def _run(self, rgb: np.ndarray, scale: float, upsample: int, threshold: float) -> list[Box]:
        height, width = rgb.shape[:2]
        if scale != 1:
            rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                                         Image.BILINEAR))
        rgb = np.ascontiguousarray(rgb)
        rects, scores, _ = self.detector.run(rgb, upsample, threshold)
        boxes = [(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale, float(s))
                 for r, s in zip(rects, scores)]
        if self.masked is None:
            return boxes
        rects, scores, _ = self.masked.run(rgb, upsample, threshold + self.offset)
        masked = [(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale, float(s) - self.offset)
                  for r, s in zip(rects, scores)]
        return merge(boxes, masked)

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        """The faces of a portrait such as the competition's (one person filling much of the frame)."""
        scale = self.side / min(rgb.shape[:2])
        for upsample in (0, 1):
            boxes = self._run(rgb, scale, upsample, self.threshold)
            if boxes:
                return boxes
        return []

    def detect_all(self, rgb: np.ndarray, min_face: int = 40, threshold: float | None = None) -> list[Box]:
        """Every face at least ``min_face`` px wide in a photo of any size (HOG's window is 80 px, so the photo is
        enlarged by 80 / min_face; dlib then scans a pyramid down from there, so large faces are found too). Very
        large photos are scanned at no more than MAX_PIXELS, which raises the smallest face found."""
        height, width = rgb.shape[:2]
        scale = min(HOG_WINDOW / max(1, min_face), (MAX_PIXELS / (height * width)) ** 0.5)
        return self._run(rgb, scale, 0, self.threshold if threshold is None else threshold)


HOG_WINDOW = 80  # px: the face size dlib's HOG detector is trained for
MAX_PIXELS = 6_000_000  # detect_all scans at most this many pixels (about 2 s of HOG on one core)
OVERLAP = 0.3  # IoU above which two boxes of the two filters are one face


def merge(bare: list[Box], masked: list[Box], overlap: float = OVERLAP) -> list[Box]:
    """The boxes of both filters with each face once: going down the scores, a box is dropped when it overlaps a
    kept box of the other filter by more than ``overlap`` IoU. (dlib has already merged each filter's own boxes;
    torchvision's nms would also merge boxes of one filter, changing what the bare filter alone returns.)"""
    if not bare or not masked:
        return bare + masked
    import torch
    from torchvision.ops import box_iou

    boxes = bare + masked
    iou = box_iou(*(torch.tensor([b[:4] for b in boxes], dtype=torch.float64),) * 2)
    source = [0] * len(bare) + [1] * len(masked)
    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -boxes[i][4]):
        if not any(source[k] != source[i] and iou[i, k] > overlap for k in kept):
            kept.append(i)
    return [boxes[i] for i in sorted(kept)]


def masked_filter_sha1(path: str | Path) -> str:
    """The content of a masked-face filter file, which must exist (one-line errors otherwise)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"masked-face filter {path} is a folder; name the filter file (facemask train-detector)")
    if not path.is_file():
        raise ConfigError(f"masked-face filter {path}: no such file")
    return hashlib.sha1(path.read_bytes()).hexdigest()


def load_masked_filter(path: str | Path, sha1: str | None = None):
    """(filter, its sha1): a masked-face HOG filter written by :func:`train_masked_filter` (dlib's own file format:
    data, no code). ``sha1``: the file must still be the one first loaded (serve loads it once per thread)."""
    import dlib

    digest = masked_filter_sha1(path)
    if sha1 is not None and digest != sha1:
        raise ConfigError(f"masked-face filter {path} changed after it was loaded; load the model again")
    try:
        return dlib.fhog_object_detector(str(path)), digest
    except RuntimeError as err:
        raise ConfigError(f"masked-face filter {path}: not a dlib HOG detector file ({str(err).splitlines()[0]})"
                          ) from err


FILTER_FACE = 100  # px: training photos are scaled so that the face is this wide (dlib's window is 80 px)


def train_masked_filter(samples, out: str | Path, *, bare_stem: str = "normal", c: float = 5.0,
                        restyle: float = 0.5, negatives: float = 1.0, seed: int = 0, people: int | None = None,
                        threads: int | None = None) -> dict:
    """Train a HOG filter for masked faces on a training set's own photos and write it to ``out`` (atomically).

    dlib's bare-face detector finds each person's bare photo (``bare_stem``); that box labels the person's other
    photos, which the competition layout takes in the same pose and size. People without one bare photo in which
    dlib finds exactly one face are left out, and so are photos of another size than their bare one. ``samples`` is
    :func:`facemask.data.layout.read_train`'s table. Returns counts for the report.

    With ``restyle`` > 0, that share of the masked photos whose mask is found (the bare photo aligned onto it, as
    the ``mask_restyle`` preset finds it) is trained on with the mask redrawn in another width, length, arch,
    colour and pattern (``mask_restyle``'s drawing, ``seed`` for its draws) instead, so that a filter trained on
    few mask styles does not learn only those (docs/results.md, "Finding faces"). The redrawn photo replaces its
    source: dlib holds every training photo's HOG features in memory (about 1.9 MB a photo at this scale), and
    ``people`` trains on that many people at most (drawn with ``seed``), for machines with less memory.

    ``negatives`` adds that many images with no face per person kept (:func:`negative_mosaics`), so that the
    filter sees more than the few non-face pixels of photos that are mostly face (docs/results.md, "Finding faces").
    """
    import dlib

    from facemask.data.images import read_rgb
    from facemask.io import atomic_write, cpu_count, describe_write_error

    if not 0 <= restyle <= 1:  # (NaN fails this too)
        raise ConfigError(f"--restyle {restyle} must be a share from 0 to 1")
    if not 0 <= negatives <= 10:  # (NaN fails this too)
        raise ConfigError(f"--negatives {negatives} must be from 0 to 10 images per person")
    if people is not None and people < 1:
        raise ConfigError(f"--people {people} must be at least 1")
    if seed < 0:
        raise ConfigError(f"--seed {seed} must be 0 or more")
    out = Path(out)
    try:  # an unwritable --out fails now, not after training (the probe deletes itself)
        out.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out.parent).close()
    except OSError as err:
        raise ConfigError(f"cannot write {out}: {describe_write_error(err)}") from err
    total = samples["person"].nunique()
    if people is not None:
        everyone = np.array(sorted(samples["person"].unique()))
        drawn = np.random.default_rng(seed).permutation(len(everyone))[:people]
        samples = samples[samples["person"].isin(set(everyone[drawn]))]
    front = dlib.get_frontal_face_detector()
    redraw = MaskRedraw(restyle, seed) if restyle else None
    images, boxes, kept, other_size = [], [], 0, 0
    for _, rows in samples.groupby("person", sort=True):
        bare = rows[rows["stem"] == bare_stem]
        if len(bare) != 1:
            continue
        photo = read_rgb(bare["file"].iloc[0])
        found = front(np.asarray(photo), 0)
        if len(found) != 1:
            continue
        face = found[0]
        scale = FILTER_FACE / max(1, face.width())
        size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
        box = (round(face.left() * scale), round(face.top() * scale), round(face.right() * scale),
               round(face.bottom() * scale))
        masked = []
        for file in rows.loc[rows["stem"] != bare_stem, "file"]:
            img = read_rgb(file)
            if img.size != photo.size:
                other_size += 1
                continue
            masked.append(np.asarray(img.resize(size, Image.BILINEAR)))
        if redraw is not None and masked:
            masked = redraw(masked, np.asarray(photo.resize(size, Image.BILINEAR)), box)
        images += masked
        boxes += [[dlib.rectangle(*box)] for _ in masked]
        kept += bool(masked)
    if not images:
        raise ConfigError(f"no person's {bare_stem} photo has exactly one face that dlib's detector finds: "
                          "nothing to label the masked photos with")
    mosaics = negative_mosaics(images, round(negatives * kept), seed)
    images, boxes = images + mosaics, boxes + [[] for _ in mosaics]  # no box: every window of them is a non-face
    options = dlib.simple_object_detector_training_options()
    options.add_left_right_image_flips = True
    options.C = c
    options.num_threads = threads or cpu_count()
    try:
        detector = dlib.train_simple_object_detector(images, boxes, options)
    except RuntimeError as err:
        raise ConfigError(f"dlib could not train a masked-face filter: {str(err).splitlines()[0]}") from err
    atomic_write(out, lambda tmp: detector.save(str(tmp)))
    return {"people": kept, "people_left_out": samples["person"].nunique() - kept, "people_drawn_from": total,
            "photos": len(images) - len(mosaics), "negatives": len(mosaics),
            "photos_left_out": other_size, "redrawn": redraw.redrawn if redraw is not None else 0,
            "no_mask_found": redraw.missed if redraw is not None else 0}


def negative_mosaics(images: list[np.ndarray], count: int, seed: int, tile: int = FILTER_FACE * 2 // 5,
                     grid: int = 4) -> list[np.ndarray]:
    """``count`` images with no face for :func:`train_masked_filter`: each a ``grid`` x ``grid`` mosaic of square
    crops of the training photos, ``tile`` px (0.4 of a face at the filter's scale) at random places, each turned
    by a random multiple of 90 degrees. They hold the photos' own colours, skin, mask fabric, hair and edges, but no
    face: a face is 100 px wide and dlib's window 80 px, so no window sees more than pieces of four crops. dlib
    learns non-faces only from what lies outside the boxes, and the competition photos are mostly face.
    (Written here: no library makes non-face images from face photos; the crops are a guess measured in
    docs/results.md, not a known recipe.)"""
    rng = np.random.default_rng([seed, 1])  # its own stream: the redrawing's draws stay as they were
    usable = [img for img in images if img.shape[0] > tile and img.shape[1] > tile]
    mosaics = []
    for _ in range(count if usable else 0):
        mosaic = np.zeros((tile * grid, tile * grid, 3), np.uint8)
        for i in range(grid):
            for j in range(grid):
                img = usable[int(rng.integers(len(usable)))]
                y, x = int(rng.integers(img.shape[0] - tile)), int(rng.integers(img.shape[1] - tile))
                mosaic[i * tile:(i + 1) * tile, j * tile:(j + 1) * tile] = np.rot90(img[y:y + tile, x:x + tile],
                                                                                    int(rng.integers(4)))
        mosaics.append(mosaic)
    return mosaics


class MaskRedraw:
    """A person's masked photos (already at the filter's scale), a share of them with the mask redrawn, for
    :func:`train_masked_filter`: the mask is found around the face box from the person's bare photo
    (facemask.data.covers) and redrawn by the ``mask_restyle`` preset (facemask.data.batch_transforms), then blended
    into a copy of the whole photo near the old mask."""

    def __init__(self, share: float, seed: int):
        from facemask.config import AugConfig
        from facemask.data.batch_transforms import MaskRestyle

        aug = AugConfig(mask_restyle_p=1.0, mask_restyle_arch=[0.0, 0.4])  # configs/cpu_mask.yaml's shapes
        self.preset, self.share = MaskRestyle(aug), share
        self.rng = np.random.default_rng(seed)
        self.redrawn = self.missed = 0

    def __call__(self, photos: list[np.ndarray], bare: np.ndarray, box: tuple[int, int, int, int]) -> list:
        """``photos`` (the person's bare photo ``bare``, the face at ``box``), each redrawn with probability
        ``share`` where its mask is found, else as it was."""
        import torch
        import torch.nn.functional as F

        from facemask.data.covers import align, cover_of

        left, top, right, bottom = box
        w, h = right - left, bottom - top
        # where a mask can be: the face box, a quarter of its width wider each side and half its height lower
        # (a mask pulled down to the chin); only there is the bare photo aligned, which is most of the time taken
        x0, y0 = max(0, left - w // 4), max(0, top)
        x1, y1 = min(bare.shape[1], right + w // 4), min(bare.shape[0], bottom + h // 2)
        if x1 - x0 < 8 or y1 - y0 < 8:
            self.missed += len(photos)
            return photos
        crops = torch.from_numpy(np.stack([p[y0:y1, x0:x1] for p in photos]).astype(np.float32)).permute(0, 3, 1, 2)
        bares = torch.from_numpy(bare[y0:y1, x0:x1].astype(np.float32)).permute(2, 0, 1)[None].expand_as(crops)
        aligned = align(bares.contiguous(), crops)
        alpha = torch.stack([torch.from_numpy(cover_of(a.permute(1, 2, 0).numpy(), p.permute(1, 2, 0).numpy()))
                             for a, p in zip(aligned, crops)])
        has_mask = (alpha > 0.5).flatten(1).sum(1) >= 16  # as MaskRestyle chooses
        self.missed += len(photos) - int(has_mask.sum())
        chosen = (has_mask & torch.from_numpy(self.rng.random(len(photos)) < self.share)).nonzero().flatten()
        if not len(chosen):
            return photos
        covers = torch.cat([aligned, alpha[:, None] * 255], 1)[chosen]
        params = torch.tensor([self.preset.draw(self.rng) for _ in chosen], dtype=torch.float64)
        redrawn, _ = self.preset.apply_covered(crops[chosen].clone(), covers, params)
        # Only the old mask's neighbourhood (its cover grown by 15% of the face's height, which holds the redrawn
        # mask, with a soft edge) takes the redrawn pixels; elsewhere the photo stays as it was, so that no
        # straight edge of the search region is left in the photo for the filter to learn.
        grow = max(1, round(0.15 * h))
        near = F.max_pool2d(alpha[chosen][:, None], 2 * grow + 1, stride=1, padding=grow)
        near = F.avg_pool2d(near, 5, stride=1, padding=2, count_include_pad=False)
        redrawn = crops[chosen] * (1 - near) + redrawn * near
        out = list(photos)
        for i, crop in zip(chosen.tolist(), redrawn):
            out[i] = photos[i].copy()
            out[i][y0:y1, x0:x1] = crop.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        self.redrawn += len(chosen)
        return out


register_detector("hog", HogDetector)


def _entry_point(name: str):
    from importlib.metadata import entry_points

    found = entry_points(group=ENTRY_POINTS, name=name)
    return next(iter(found), None)


def get_detector(name: str, masked: str | Path | None = None, masked_sha1: str | None = None) -> Detector:
    """The detector registered as ``name`` (or installed as a ``facemask.detectors`` entry point), or a trusted
    ``module:factory`` imported; built once per thread (and process). ``masked``: a masked-face filter file
    (:func:`train_masked_filter`) to scan beside ``hog``'s bare-face one; ``masked_sha1``: its content, checked
    when a thread or process loads it."""
    built = _loaded.__dict__.setdefault("detectors", {})
    if masked is not None:
        if name != "hog":
            raise ConfigError(f"a masked-face filter works with data.face_crop=hog, not {name!r}")
        key = ("hog", str(masked))
        if key not in built:
            built[key] = HogDetector(masked=masked, masked_sha1=masked_sha1)
        elif masked_sha1 is not None and built[key].masked_sha1 != masked_sha1:  # another model, another file
            built[key] = HogDetector(masked=masked, masked_sha1=masked_sha1)
        return built[key]
    if name not in built:
        if name in DETECTORS:
            factory = DETECTORS[name]
        elif (entry := _entry_point(name)) is not None:
            factory = entry.load()
        elif ":" in name:
            if name not in _trusted:
                raise ConfigError(
                    f"data.face_crop={name!r} names code to import, and a run's saved config is never trusted to "
                    "import code: pass --trust-run-code if you trust where this run came from, or register the "
                    f"detector (facemask.data.faces.register_detector, or a {ENTRY_POINTS} entry point)")
            module, _, attr = name.partition(":")
            try:
                factory = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                raise ConfigError(f"data.face_crop={name!r}: cannot import {attr} from {module}: {err}") from err
        else:
            raise ConfigError(f"unknown option data.face_crop={name!r} (known: none, {', '.join(sorted(DETECTORS))},"
                              " or module:factory)")
        built[name] = factory()
    return built[name]


def detect_faces(rgb: np.ndarray, detector: Detector, min_face: int = 40, threshold: float | None = None,
                 ) -> list[Box]:
    """Every face in a photo of any size, best score first: the detector's ``detect_all`` when it has one, or all
    the boxes it returns (above ``threshold`` when given)."""
    if hasattr(detector, "detect_all"):
        boxes = detector.detect_all(rgb, min_face=min_face, threshold=threshold)
    else:
        boxes = [b for b in detector(rgb) if threshold is None or b[4] >= threshold]
    return sorted(boxes, key=lambda b: -b[4])


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
    boxes = detector(rgb)
    if boxes:
        return crop_box(max(boxes, key=lambda b: b[4]), aspect, margin), True
    return fallback_crop(rgb.shape[:2], aspect, margin, fallback), False


def fallback_crop(shape: tuple[int, int], aspect: float, margin: float, fallback: float) -> tuple[int, int, int, int]:
    """The crop when no face is found: a square face ``fallback`` x the shorter side wide, centred horizontally at
    44% of the height, where the competition's photos have it (``shape`` = (height, width))."""
    height, width = shape
    side = fallback * min(width, height)
    return _crop_around(FALLBACK_CENTRE[0] * width, FALLBACK_CENTRE[1] * height, side, side, aspect, margin)


def crop_box(face: Sequence[float], aspect: float, margin: float) -> tuple[int, int, int, int]:
    """The crop around a face box (left, top, right, bottom): ``margin`` of its size added on every side, then
    grown to ``aspect`` (height / width) around its centre. It may reach outside the photo (the caller pads)."""
    left, top, right, bottom = face[:4]
    return _crop_around((left + right) / 2, (top + bottom) / 2, right - left, bottom - top, aspect, margin)


def _crop_around(cx: float, cy: float, face_w: float, face_h: float, aspect: float,
                 margin: float) -> tuple[int, int, int, int]:
    crop_w, crop_h = face_w * (1 + 2 * margin), face_h * (1 + 2 * margin)
    crop_w, crop_h = max(crop_w, crop_h / aspect), max(crop_h, crop_w * aspect)  # grow to the input's aspect
    crop_w, crop_h = max(1, round(crop_w)), max(1, round(crop_h))
    left, top = round(cx - crop_w / 2), round(cy - crop_h / 2)
    return left, top, left + crop_w, top + crop_h


def detector_id(name: str) -> str:
    """What identifies a detector's output in the cache key: its ``cache_id`` attribute (name, version and
    settings), or its name. A plug-in whose results change should change its ``cache_id``."""
    return str(getattr(get_detector(name), "cache_id", name))
