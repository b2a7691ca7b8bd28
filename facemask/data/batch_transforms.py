"""Augmentation of a whole uint8 batch at once (``data.augment_mode=batch``): the same presets as
facemask.data.transforms, written as vectorised tensor operations with one set of parameters per image.

Each image draws its parameters from its own seed (the sampler's per-sample seed), so the result depends only on
the image and its seed: not on the batch it is in (one option excepted: ``aug.hand_mask_p``, whose hands are made of
another photo of the batch), the device, the workers or a resumption. The work per batch is
a handful of tensor operations (a 3x3 colour matrix per image for the hue, one ``grid_sample`` for the geometry,
one grouped convolution for the blur) instead of a chain of per-image transforms, which is what lets training run
at the model's own speed with a framing-robust recipe (``benchmarks/train_throughput.py --augment-mode batch``).
JPEG re-encoding and the resolution drop are done per selected image (they change sizes or leave the tensor).

Written by hand: torchvision's v2 transforms draw one set of parameters for a whole batch, and Kornia (which does
per-sample parameters) would be a new dependency with its own random streams that cannot be seeded per sample.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from facemask.config import AugConfig
from facemask.data.images import FILL
from facemask.data.labels import MASK_NAMES, NUM_CLASSES, SHAPE, attribute_of
from facemask.data.transforms import preset_names
from facemask.errors import ConfigError

# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) plane, so it is one 3x3 matrix per image.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
_YIQ_INV = torch.linalg.inv(_YIQ)
_GREY = torch.tensor([0.299, 0.587, 0.114])


class BatchPreset(ABC):
    """One preset: ``draw(rng)`` gives one image's parameters (a tuple of floats), ``apply(x, params)`` transforms a
    float batch (N, 3, H, W) in 0..255 with the stacked parameters (N, k)."""

    @abstractmethod
    def draw(self, rng: np.random.Generator) -> tuple[float, ...]:
        """One image's parameters."""

    @abstractmethod
    def apply(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """The batch transformed, image i with params[i]."""


class Flip(BatchPreset):
    def __init__(self, aug: AugConfig):
        self.p = aug.flip_p

    def draw(self, rng):
        return (float(rng.random() < self.p),)

    def apply(self, x, params):
        chosen = params[:, 0].nonzero().flatten().to(x.device)
        if len(chosen):
            x[chosen] = x[chosen].flip(-1)
        return x


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (x * _GREY.to(x).view(1, 3, 1, 1)).sum(1, keepdim=True)


class Colour(BatchPreset):
    """Brightness, contrast, saturation and hue, in that order, each with its factor drawn per image.

    All four are linear in the pixel values, so they fold into one 3x3 matrix and one grey offset per image and
    cost one batched matrix product: brightness b scales, contrast c pulls towards the image's mean grey,
    saturation s towards each pixel's grey, and hue h rotates the (I, Q) plane of YIQ by h turns. (torchvision
    clamps to 0..255 after each step; here the result is clamped once.)"""

    def __init__(self, aug: AugConfig, brightness=None, contrast=None, saturation=None, hue=None):
        self.b = aug.brightness if brightness is None else brightness
        self.c = aug.contrast if contrast is None else contrast
        self.s = aug.saturation if saturation is None else saturation
        self.h = aug.hue if hue is None else hue

    def draw(self, rng):
        def factor(width):
            return float(rng.uniform(max(0.0, 1 - width), 1 + width)) if width else 1.0
        return factor(self.b), factor(self.c), factor(self.s), float(rng.uniform(-self.h, self.h)) if self.h else 0.0

    def apply(self, x, params):
        n = len(x)
        b, c, s, h = (params[:, i].double() for i in range(4))
        matrix = _colour_matrix(b, c, s, h)  # (N, 3, 3)
        flat = x.reshape(n, 3, -1)
        offset = ((1 - c) * b).to(x)[:, None, None] * (_GREY.to(x)[None, :, None] * flat).sum(1, keepdim=True).mean(
            2, keepdim=True)  # (1 - c) x the mean grey after brightness, the same in the three channels
        out = torch.baddbmm(offset.expand(n, 3, 1), matrix.to(x), flat)
        return out.reshape(x.shape).clamp_(0, 255)


class Temperature(BatchPreset):
    def __init__(self, aug: AugConfig):
        self.strength = aug.temperature

    def draw(self, rng):
        return (float(rng.uniform(-self.strength, self.strength)),)

    def apply(self, x, params):
        t = params[:, 0].to(x)
        gains = torch.stack([1 + t, torch.ones_like(t), 1 - t], 1)[:, :, None, None]
        return x.mul_(gains).clamp_(0, 255)


class Geometry(BatchPreset):
    """Rotation, scale, shear and shift about the centre, grey (FILL) beyond the photo: ``framing``, ``affine`` and
    ``resized_crop`` are all one affine map per image, applied with one ``grid_sample``."""

    def __init__(self, degrees=0.0, translate=0.0, scale=(1.0, 1.0), shear=0.0, crop_scale=None, crop_ratio=None):
        self.degrees, self.translate, self.scale, self.shear = degrees, translate, tuple(scale), shear
        self.crop_scale, self.crop_ratio = crop_scale, crop_ratio

    def draw(self, rng):
        if self.crop_scale is not None:  # resized_crop: area fraction and aspect of the kept part, stretched back
            area = rng.uniform(*self.crop_scale)
            ratio = math.exp(rng.uniform(math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])))
            sx, sy = min(1.0, math.sqrt(area * ratio)), min(1.0, math.sqrt(area / ratio))
            cx, cy = rng.uniform(-(1 - sx), 1 - sx), rng.uniform(-(1 - sy), 1 - sy)  # the kept part's centre
            return 0.0, 1 / sx, 1 / sy, 0.0, float(-cx / sx), float(-cy / sy)
        angle = rng.uniform(-self.degrees, self.degrees) if self.degrees else 0.0
        zoom = rng.uniform(*self.scale)
        shear = rng.uniform(-self.shear, self.shear) if self.shear else 0.0
        tx = rng.uniform(-self.translate, self.translate) * 2 if self.translate else 0.0
        ty = rng.uniform(-self.translate, self.translate) * 2 if self.translate else 0.0
        return float(angle), float(zoom), float(zoom), float(shear), float(tx), float(ty)

    def apply(self, x, params):
        n, _, h, w = x.shape
        angle, zx, zy, shear = (params[:, i].double() for i in range(4))
        tx, ty = params[:, 4].double(), params[:, 5].double()
        a, s = torch.deg2rad(angle), torch.deg2rad(shear)
        # forward map (output = A @ input) in normalised coordinates with the aspect ratio taken into account
        forward = torch.zeros(n, 3, 3, dtype=torch.float64)
        forward[:, 0, 0] = zx * torch.cos(a)
        forward[:, 0, 1] = zx * (-torch.sin(a) + torch.tan(s) * torch.cos(a)) * h / w
        forward[:, 1, 0] = zy * torch.sin(a) * w / h
        forward[:, 1, 1] = zy * (torch.cos(a) + torch.tan(s) * torch.sin(a))
        forward[:, 0, 2], forward[:, 1, 2], forward[:, 2, 2] = tx, ty, 1
        theta = torch.linalg.inv(forward)[:, :2].to(x)  # grid_sample wants output -> input
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x - FILL, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + FILL


class Blur(BatchPreset):
    """Gaussian blur (5x5, like torchvision's preset), sigma drawn per image, with probability p."""

    SIZE = 5

    def __init__(self, aug: AugConfig):
        self.p, self.sigma = aug.blur_p, tuple(aug.blur_sigma)

    def draw(self, rng):
        return float(rng.random() < self.p), float(rng.uniform(*self.sigma))

    def apply(self, x, params):
        on = params[:, 0].bool()
        if not on.any():
            return x
        n, c, h, w = x.shape
        radius = self.SIZE // 2
        offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        sigma = params[:, 1].to(x).clamp(min=1e-3)
        kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
        kernel = kernel / kernel.sum(1, keepdim=True)
        identity = torch.zeros_like(kernel)
        identity[:, radius] = 1
        kernel = torch.where(on[:, None], kernel, identity).repeat_interleave(c, 0)  # (n*c, SIZE)
        flat = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
        flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * c)
        flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * c)
        return flat.reshape(n, c, h, w)


class LowResolution(BatchPreset):
    def __init__(self, aug: AugConfig):
        factors = tuple(aug.lowres_factor)
        if len(factors) != 2 or not 0 < factors[0] <= factors[1] <= 1:
            raise ValueError(f"aug.lowres_factor must be [low, high] with 0 < low <= high <= 1, got {list(factors)}")
        self.p, self.factors = aug.lowres_p, factors

    def draw(self, rng):
        return float(rng.random() < self.p), float(rng.uniform(*self.factors))

    def apply(self, x, params):
        out = x.clone()
        h, w = x.shape[-2:]
        for i in params[:, 0].nonzero().flatten().tolist():  # a few images per batch, each its own size
            f = float(params[i, 1])
            small = F.interpolate(x[i:i + 1], size=(max(4, round(h * f)), max(4, round(w * f))), mode="bilinear",
                                  antialias=True, align_corners=False)
            out[i:i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        return out.clamp_(0, 255)


class Jpeg(BatchPreset):
    def __init__(self, aug: AugConfig):
        low, high = aug.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"aug.jpeg_quality must be [low, high] within 1..100, got {aug.jpeg_quality}")
        self.p, self.quality = aug.jpeg_p, (int(low), int(high))

    def draw(self, rng):
        return float(rng.random() < self.p), float(rng.integers(self.quality[0], self.quality[1] + 1))

    def apply(self, x, params):
        from torchvision.io import decode_jpeg, encode_jpeg

        out = x.clone()
        for i in params[:, 0].nonzero().flatten().tolist():
            image = x[i].round().clamp(0, 255).to(torch.uint8).cpu()
            out[i] = decode_jpeg(encode_jpeg(image, quality=int(params[i, 1]))).to(x)
        return out


class Noise(BatchPreset):
    """Gaussian noise in 0..255 units; each image's noise comes from its own seed (drawn on the CPU)."""

    def __init__(self, aug: AugConfig):
        self.std = aug.noise_std

    def draw(self, rng):
        return (float(rng.integers(2**52)),)  # exact as a float64 parameter

    def apply(self, x, params):
        noise = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(int(seed)))
                             for seed in params[:, 0].tolist()])
        return (x + noise.to(x) * self.std).clamp_(0, 255)


class Grayscale(BatchPreset):
    def __init__(self, p: float):
        self.p = p

    def draw(self, rng):
        return (float(rng.random() < self.p),)

    def apply(self, x, params):
        return torch.where(params[:, 0].bool()[:, None, None, None], _grey(x).expand_as(x), x)


class Erasing(BatchPreset):
    """Random erasing (value 0) of a rectangle of 2% to 33% of the image, aspect 0.3 to 3.3, with probability p."""

    def __init__(self, aug: AugConfig):
        self.p = aug.erasing_p

    def draw(self, rng):
        area, ratio = rng.uniform(0.02, 0.33), math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        h, w = math.sqrt(area * ratio), math.sqrt(area / ratio)
        return float(rng.random() < self.p), min(h, 1.0), min(w, 1.0), float(rng.random()), float(rng.random())

    def apply(self, x, params):
        _, _, h, w = x.shape
        rows = torch.arange(h, device=x.device, dtype=x.dtype)[None, :, None] / h
        cols = torch.arange(w, device=x.device, dtype=x.dtype)[None, None, :] / w
        eh, ew = params[:, 1, None, None].to(x), params[:, 2, None, None].to(x)
        top, left = params[:, 3, None, None].to(x) * (1 - eh), params[:, 4, None, None].to(x) * (1 - ew)
        inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
        inside &= params[:, 0].bool()[:, None, None]
        return x.masked_fill(inside[:, None], 0.0)


def _colour_matrix(b, c, s, h) -> torch.Tensor:
    """(N, 3, 3) float64: brightness b, contrast c (scale only), saturation s and hue h (turns), composed."""
    n = len(b)
    grey = _GREY.double()
    saturation = s[:, None, None] * torch.eye(3, dtype=torch.float64) + \
        (1 - s)[:, None, None] * torch.ones(3, 1, dtype=torch.float64) @ grey[None]
    angle = h * 2 * math.pi
    rotation = torch.zeros(n, 3, 3, dtype=torch.float64)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = \
        angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    return (b * c)[:, None, None] * (_YIQ_INV @ rotation @ _YIQ) @ saturation


def _enlarged(images: torch.Tensor, zoom: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Each image enlarged by 1 / zoom: output point (u, v) shows input point (zoom * u + tx, zoom * v + ty), in
    grid_sample's -1..1 (so (tx, ty) is what the output's centre shows); borders repeated."""
    theta = torch.zeros(len(images), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = zoom, zoom, tx, ty
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class LowerFace(BatchPreset):
    """Presets acting on the lower face, where a mask is: a soft ellipse ``aug.lower_face`` (centre x, centre y, half
    width, half height, fractions of the face-cropped input), moved and resized a little per image."""

    JITTER = 0.05  # of the input's size, each way

    def __init__(self, aug: AugConfig, p: float):
        if len(aug.lower_face) != 4 or not all(0 < v < 1 for v in aug.lower_face):
            raise ValueError(f"aug.lower_face must be 4 fractions (centre x, centre y, half width, half height), "
                             f"got {aug.lower_face}")
        self.p, self.region = p, tuple(aug.lower_face)

    def draw_region(self, rng) -> tuple[float, ...]:
        cx, cy, rx, ry = self.region
        grow = rng.uniform(0.85, 1.2)
        return (cx + rng.uniform(-self.JITTER, self.JITTER), cy + rng.uniform(-self.JITTER, self.JITTER),
                rx * grow, ry * grow * rng.uniform(0.85, 1.2))

    @staticmethod
    def weights(region: torch.Tensor, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) in 0..1: 1 inside each image's ellipse, fading to 0 over its last fifth."""
        cx, cy, rx, ry = (region[:, i].to(like)[:, None, None] for i in range(4))
        rows = (torch.arange(h, device=like.device, dtype=like.dtype)[None, :, None] + 0.5) / h
        cols = (torch.arange(w, device=like.device, dtype=like.dtype)[None, None, :] + 0.5) / w
        distance = (((cols - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2).sqrt()
        return ((1 - distance) / 0.2).clamp(0, 1)[:, None]


class MaskColour(LowerFace):
    """Recolours the lower face: any hue, a wide range of saturation and brightness, with probability p. Masked faces
    get masks of colours training never saw; bare faces get odd skin colours there, so that 'worn' has to rest on
    the nose and mouth being covered, not on the colour of what covers them."""

    def __init__(self, aug: AugConfig):
        super().__init__(aug, aug.mask_colour_p)

    def draw(self, rng):
        return (float(rng.random() < self.p), *self.draw_region(rng), float(rng.uniform(0.5, 1.5)),
                float(rng.uniform(0.2, 1.8)), float(rng.random()))

    def apply(self, x, params):
        chosen = params[:, 0].nonzero().flatten()
        if not len(chosen):
            return x
        part = x[chosen.to(x.device)]
        p = params[chosen]
        n = len(part)
        matrix = _colour_matrix(p[:, 5], torch.ones(n, dtype=torch.float64), p[:, 6], p[:, 7]).to(part)
        recoloured = torch.bmm(matrix, part.reshape(n, 3, -1)).reshape(part.shape).clamp_(0, 255)
        weight = self.weights(p[:, 1:5], *x.shape[-2:], part)
        x[chosen.to(x.device)] = part * (1 - weight) + recoloured * weight
        return x


class MaskTexture(LowerFace):
    """A pattern over the lower face, with probability p: stripes, checks, dots or fine noise, of a random colour,
    period, angle and opacity (printed and woven cloth masks)."""

    def __init__(self, aug: AugConfig):
        super().__init__(aug, aug.mask_texture_p)

    def draw(self, rng):
        return (float(rng.random() < self.p), *self.draw_region(rng), float(rng.integers(4)),
                float(rng.uniform(3, 10)), float(rng.uniform(0, math.pi)), *(float(v) for v in rng.uniform(0, 255, 3)),
                float(rng.uniform(0.25, 0.7)), float(rng.uniform(0, 1000)))

    def apply(self, x, params):
        chosen = params[:, 0].nonzero().flatten()
        if not len(chosen):
            return x
        part, p = x[chosen.to(x.device)], params[chosen].to(x)
        h, w = x.shape[-2:]
        rows = torch.arange(h, device=x.device, dtype=x.dtype)[None, :, None]
        cols = torch.arange(w, device=x.device, dtype=x.dtype)[None, None, :]
        kind, period, angle = p[:, 5, None, None], p[:, 6, None, None], p[:, 7, None, None]
        u = cols * angle.cos() + rows * angle.sin()  # along the pattern
        v = -cols * angle.sin() + rows * angle.cos()
        stripes = (torch.sin(2 * math.pi * u / period) > 0).to(x)
        checks = ((torch.sin(2 * math.pi * u / period) > 0) ^ (torch.sin(2 * math.pi * v / period) > 0)).to(x)
        dots = ((torch.remainder(u, period) - period / 2) ** 2 + (torch.remainder(v, period) - period / 2) ** 2 <
                (period / 4) ** 2).to(x)
        noise = torch.remainder(torch.sin(u * 12.9898 + v * 78.233 + p[:, 12, None, None]) * 43758.5453, 1.0)
        pattern = torch.where(kind == 0, stripes, torch.where(kind == 1, checks, torch.where(kind == 2, dots, noise)))
        alpha = (pattern * p[:, 11, None, None])[:, None] * self.weights(params[chosen][:, 1:5], h, w, x)
        colour = p[:, 8:11, None, None]
        x[chosen.to(x.device)] = part * (1 - alpha) + colour * alpha
        return x


class SyntheticMask(LowerFace):
    """Draws a mask of a random shape, colour and pattern over the lower face, with probability p, and sets the
    label to what the drawing makes true: over the nose and mouth ("wear"), or below the nose or on the chin
    ("incorrect"). Mask styles are endless and every training set holds a few; faces covered by arbitrary shapes
    teach "worn" as "nose and mouth covered" rather than as the look of the training set's masks. Shapes range from
    rectangles to ellipses, with top and bottom edges bent like a cup and a bottom edge rounded or pointed at the
    chin (cloth masks, KN95); a share ``aug.synthetic_mask_photo_p`` of them is made of the photo's own material
    (a small part of it enlarged, mostly the face's skin) rather than a flat colour and a pattern.

    No label is ever wrong: on a bare face either kind is drawn; on an incorrectly worn mask, a worn one (the face
    becomes "wear") or another incorrect one (it stays "incorrect"); on a worn mask only a worn one (a lower drawing
    would leave the nose covered). Batch mode only (it changes labels).

    Geometry in fractions of the face-cropped input: ``aug.lower_face`` gives the mask region's centre and size;
    a worn mask reaches up over the nose, an incorrect one starts below the nose or at the mouth."""

    WORN, NOSE, CHIN = 0, 1, 2

    def __init__(self, aug: AugConfig):
        super().__init__(aug, aug.synthetic_mask_p)
        self.photo_p = aug.synthetic_mask_photo_p

    def draw(self, rng):
        mode = int(rng.choice(3, p=[0.6, 0.27, 0.13]))  # the stand-in's and the competition's mix of modes
        cx, cy, rx, ry = self.draw_region(rng)
        top = cy - ry * {self.WORN: rng.uniform(1.0, 1.45), self.NOSE: rng.uniform(0.2, 0.45),
                         self.CHIN: rng.uniform(-0.35, -0.1)}[mode]
        bottom = cy + ry * rng.uniform(0.85, 1.25)
        colour = rng.uniform(0, 255, 3)
        return (float(rng.random() < self.p), float(mode), float(cx), float(top), float(bottom),
                float(rx * rng.uniform(0.85, 1.15)), float(rng.uniform(1.8, 6.0)), float(rng.uniform(-0.6, 0.6)),
                *(float(v) for v in colour), float(rng.uniform(-0.35, 0.35)), float(rng.integers(5)),
                float(rng.uniform(2.5, 9)), float(rng.uniform(0, math.pi)), float(rng.uniform(0.15, 0.6)),
                float(rng.uniform(0, 1000)), float(rng.uniform(-8, 8)),
                float(rng.random() < self.photo_p), *(float(v) for v in rng.uniform(0.6, 1.4, 3)),
                float(rng.uniform(0, 0.6)), float(rng.uniform(3, 6)), *(float(v) for v in rng.uniform(-1, 1, 2)))

    def apply(self, x, params):
        raise ConfigError("data.augment preset 'synthetic_mask' changes labels: it runs through apply_labelled")

    def apply_labelled(self, x: torch.Tensor, params: torch.Tensor, labels: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        mask_state = attribute_of(labels % NUM_CLASSES, "mask")
        chosen = params[:, 0].bool().nonzero().flatten()
        if not len(chosen):
            return x, labels
        params = params.clone()
        worn = (mask_state.cpu() == MASK_NAMES.index("wear"))[chosen]
        params[chosen[worn], 1] = self.WORN  # a worn mask can only be drawn over by another worn one
        top = params[chosen[worn], 2:6]  # ... so its top is moved up over the nose too
        redraw = self.region[1] - self.region[3] * 1.2
        params[chosen[worn], 3] = torch.minimum(top[:, 1], torch.full_like(top[:, 1], redraw))
        p = params[chosen].to(x)
        h, w = x.shape[-2:]
        rows = (torch.arange(h, device=x.device, dtype=x.dtype)[None, :, None] + 0.5) / h
        cols = (torch.arange(w, device=x.device, dtype=x.dtype)[None, None, :] + 0.5) / w
        cx, top, bottom, rx = (p[:, i, None, None] for i in (2, 3, 4, 5))
        power, bend, tilt = p[:, 6, None, None], p[:, 7, None, None], p[:, 17, None, None]
        u = (cols - cx) / rx
        rows = rows - tilt / 100 * u  # a slightly tilted mask
        centre, half = (top + bottom) / 2, (bottom - top) / 2
        v = (rows - centre - bend * half * (u ** 2 - 0.5) * 0.5) / half  # a top and bottom edge bent like a cup
        point = p[:, 22, None, None]  # a bottom edge pointed at the chin (cloth and KN95 masks)
        v = torch.where(v > 0, v / (1 + point * (1 - u.abs()).clamp(min=0)), v)
        inside = u.abs() ** power + v.abs() ** power
        alpha = ((1 - inside) / 0.15).clamp(0, 1)  # a soft edge
        shading = 1 + p[:, 11, None, None] * v + 0.15 * torch.cos(u * math.pi / 2)  # light from above, rounded
        base = p[:, 8:11, None, None] * shading[:, None]
        kind, period, angle = p[:, 12, None, None], p[:, 13, None, None], p[:, 14, None, None]
        px, py = cols * w, rows * h
        a = px * angle.cos() + py * angle.sin()
        b = -px * angle.sin() + py * angle.cos()
        stripes = (torch.sin(2 * math.pi * a / period) > 0).to(x)
        pleats = (torch.remainder(py - top * h, period * 1.5) < 1.0).to(x)  # surgical-style folds
        checks = ((torch.sin(2 * math.pi * a / period) > 0) ^ (torch.sin(2 * math.pi * b / period) > 0)).to(x)
        noise = torch.remainder(torch.sin(a * 12.9898 + b * 78.233 + p[:, 16, None, None]) * 43758.5453, 1.0)
        pattern = torch.where(kind == 0, torch.zeros_like(stripes), torch.where(kind == 1, stripes, torch.where(
            kind == 2, pleats, torch.where(kind == 3, checks, noise))))
        texture = 1 - p[:, 15, None, None] * pattern  # darker where the pattern is
        mask = (base * texture[:, None]).clamp(0, 255)
        index = chosen.to(x.device)
        # Some masks are made of real material rather than a colour and a pattern: a small part of the photo itself,
        # enlarged 3-6x and tinted (mostly the face's own skin, blurred by the enlargement; sometimes hair, clothes,
        # background or a mask). The photo's own, so that each image's result depends on its seed alone.
        photo = p[:, 18].bool().nonzero().flatten()
        if len(photo):
            q = p[photo]
            zoom = 1 / q[:, 23]
            material = _enlarged(x[index[photo]], zoom, q[:, 24] * (1 - zoom), q[:, 25] * (1 - zoom))
            mask[photo] = (material * q[:, 19:22, None, None] * shading[photo][:, None]).clamp(0, 255)
        x[index] = x[index] * (1 - alpha[:, None]) + mask * alpha[:, None]
        new_state = torch.where(p[:, 1] == self.WORN, MASK_NAMES.index("wear"), MASK_NAMES.index("incorrect"))
        labels = labels.clone()
        old_state = mask_state[index]
        labels[index] = labels[index] + (new_state.to(labels) - old_state) * (SHAPE[1] * SHAPE[2])
        return x, labels


class Hand(LowerFace):
    """A hand held over the mouth of a bare face, with probability p; the label stays "not worn" (with
    ``aug.hand_worn_p``, over some worn masks too, which stay "worn"). Presets that draw
    masks teach "a mask covers the nose and mouth"; a hand over the mouth is something else covering it, so that
    "worn" cannot rest on "something covers the mouth" alone. The hand (a palm, four fingers and a thumb, left or
    right, turned up to 70 degrees either way, its size ``aug.hand_size`` times the lower face's width) is placed
    over the mouth (its palm a little below the centre of ``aug.lower_face``) in the face's own skin colour (the mean
    of the middle of the face, tinted), shaded darker at its edges. Bare faces get one, and worn masks only with
    ``aug.hand_worn_p`` (below); incorrectly worn masks never: one on the chin, under a hand, would look bare. Batch
    mode only (it reads the labels).

    What the hand is made of varies, so that its shape is what tells it from a mask: ``aug.hand_skin_p`` of the
    hands are made of the photo's own skin (the face about the nose, enlarged 3-6x: its grain and shading), the
    rest are one flat colour; independently, ``aug.hand_glove_p`` of them take any colour instead of the skin's.
    Hands all of one flat skin colour taught a model that white N95 and KN95 masks (flat too) are hands; hands all
    of skin taught it that pink cloth masks are (docs/results.md, "A hand over the mouth"). ``aug.hand_mask_p`` of
    the hands are made instead of a worn mask: the middle of the lower face of a photo labelled "worn" in the same
    batch (chosen by the image's seed; with ``mask_restyle`` before it, a redrawn mask), enlarged 1.5-3x, so that
    the hand shares its material with the masks the model is taught are worn. Unlike the rest of this module, such
    a hand depends on the batch it is in (as CutMix's patches do); the same seed and batches give the same hands.
    In a batch without a worn photo those hands are made of what the two options above give them.

    With ``aug.hand_worn_p``, correctly worn masks get a hand over the mouth too (with probability p times it), and
    keep their label: the mask is still worn under it, and shows around it. A hand is then no cue for "not worn";
    what is around it is. Their skin is taken from the forehead (the middle of the face is the mask).

    Written by hand, like the other presets here: no augmentation library draws occluders of a given shape at a
    given place of each image with per-image seeds."""

    FINGERS = ((-0.27, 0.48, -2.0), (-0.09, 0.58, -0.7), (0.09, 0.56, 0.7), (0.26, 0.44, 2.0))  # base, length, lean
    FOREHEAD = 0.27  # where the skin of a face wearing a mask is taken from, in crop heights (eyes at about 0.37)

    def __init__(self, aug: AugConfig):
        super().__init__(aug, aug.hand_p)
        if len(aug.hand_size) != 2 or not 0 < aug.hand_size[0] <= aug.hand_size[1]:
            raise ValueError(f"aug.hand_size must be a range [low, high] of positive factors, got {aug.hand_size}")
        self.size = tuple(aug.hand_size)
        self.skin_p, self.glove_p, self.mask_p = aug.hand_skin_p, aug.hand_glove_p, aug.hand_mask_p
        self.worn_p = aug.hand_worn_p

    def draw(self, rng):
        cx, cy, rx, _ = self.draw_region(rng)
        return (float(rng.random() < self.p), float(cx + rx * rng.uniform(-0.3, 0.3)),
                float(cy + self.region[3] * rng.uniform(0.2, 1.0)), float(2 * rx * rng.uniform(*self.size)),
                float(np.deg2rad(rng.uniform(-70, 70))), float(rng.choice([-1.0, 1.0])), float(rng.uniform(0, 0.12)),
                *(float(v) for v in rng.uniform(0.9, 1.1, 4)), float(np.deg2rad(rng.uniform(40, 75))),
                *(float(v) for v in rng.uniform(0.92, 1.08, 3)), float(rng.uniform(0.8, 1.2)),
                *self.draw_skin(rng), *self.draw_mask(rng), *self.draw_worn(rng))

    def draw_worn(self, rng) -> tuple[float, ...]:
        """Whether a correctly worn mask gets the hand too; nothing drawn when ``aug.hand_worn_p`` is 0."""
        return (float(rng.random() < self.worn_p),) if self.worn_p else (0.0,)

    def draw_mask(self, rng) -> tuple[float, ...]:
        """Whether the hand is made of a worn mask of the batch, which one (a share of the batch's worn photos), how
        enlarged (1.5-3x) and where about the middle of its lower face; nothing drawn when ``aug.hand_mask_p`` is 0."""
        if not self.mask_p:
            return 0.0, 0.0, 2.0, 0.0, 0.0
        return (float(rng.random() < self.mask_p), float(rng.random()), float(rng.uniform(1.5, 3)),
                *(float(v) for v in rng.uniform(-0.03, 0.03, 2)))

    def draw_skin(self, rng) -> tuple[float, ...]:
        """Whether the hand is made of the photo's own skin, and how enlarged (3-6x), and whether it is a glove, and
        its colour. Draws nothing when ``aug.hand_skin_p`` and ``aug.hand_glove_p`` are both 0, so that the presets
        after it keep the draws they had before these options."""
        if not self.skin_p and not self.glove_p:
            return 0.0, 4.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0
        return (float(rng.random() < self.skin_p), float(rng.uniform(3, 6)),
                *(float(v) for v in rng.uniform(-0.04, 0.04, 2)), float(rng.random() < self.glove_p),
                *(float(v) for v in rng.uniform(0, 255, 3)))

    def apply(self, x, params):
        raise ConfigError("data.augment preset 'hand' reads the labels: it runs through apply_labelled")

    @staticmethod
    def _capsule(u, v, start, angle, length, width):
        """Distance from (u, v) to a finger (a segment from ``start`` at ``angle`` from up), less its half width."""
        du, dv = torch.sin(angle), -torch.cos(angle)
        along = ((u - start[0]) * du + (v - start[1]) * dv).clamp(min=torch.zeros_like(length), max=length)
        return ((u - start[0] - along * du) ** 2 + (v - start[1] - along * dv) ** 2).sqrt() - width / 2

    def apply_labelled(self, x: torch.Tensor, params: torch.Tensor, labels: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        mask_state = attribute_of(labels % NUM_CLASSES, "mask").cpu()
        bare, worn_face = mask_state == MASK_NAMES.index("not wear"), mask_state == MASK_NAMES.index("wear")
        chosen = (params[:, 0].bool() & (bare | (worn_face & params[:, 29].bool()))).nonzero().flatten()
        if not len(chosen):
            return x, labels
        index = chosen.to(x.device)
        p = params[chosen].to(x)
        h, w = x.shape[-2:]
        rows = (torch.arange(h, device=x.device, dtype=x.dtype)[None, :, None] + 0.5) / h * h / w  # in widths
        cols = (torch.arange(w, device=x.device, dtype=x.dtype)[None, None, :] + 0.5) / w
        cx, cy, size, turn, side, spread = (p[:, i, None, None] for i in range(1, 7))
        du, dv = cols - cx, rows - cy * h / w
        u = (du * turn.cos() + dv * turn.sin()) * side / size  # the hand's frame: fingers up, palm at (0, 0)
        v = (-du * turn.sin() + dv * turn.cos()) / size
        parts = [((u / 0.40) ** 2 + (v / 0.36) ** 2).sqrt() * 0.36 - 0.36]  # the palm (about its own distance)
        for k, (base, length, lean) in enumerate(self.FINGERS):
            parts.append(self._capsule(u, v, (base, -0.2), lean * spread, length * p[:, 7 + k, None, None], 0.16))
        parts.append(self._capsule(u, v, (0.3, 0.1), p[:, 11, None, None], torch.full_like(spread, 0.42), 0.19))
        distance = torch.stack(parts).amin(0) * size * w  # pixels outside (+) or inside (-) the hand
        alpha = (0.5 - distance).clamp(0, 1)  # a one-pixel soft edge
        cx0, cy0, rx0, ry0 = self.region  # the skin: the middle of the face, between the nose and the cheeks, ...
        on_mask = worn_face[chosen].to(x.device)  # ... or, over a worn mask, the forehead
        skin_y = torch.where(on_mask, self.FOREHEAD, cy0 - 0.7 * ry0)
        region = torch.stack([torch.full_like(skin_y, cx0), skin_y, torch.full_like(skin_y, 0.5 * rx0),
                              torch.where(on_mask, 0.3 * ry0, 0.5 * ry0)], 1)
        weight = self.weights(region, h, w, x)
        skin = (x[index] * weight).sum((2, 3)) / weight.sum((2, 3)).clamp(min=1e-6)
        colour = skin * p[:, 12:15] * p[:, 15:16]
        glove = p[:, 20].bool()
        colour[glove] = p[glove, 21:24]  # any colour
        shading = 0.8 + 0.25 * (-distance / (0.06 * size * w)).clamp(0, 1)  # darker at the edges
        hand = colour[:, :, None, None].expand(-1, -1, h, w).clone()  # (the materials below are written into it)
        textured = p[:, 16].bool().nonzero().flatten()
        # Skin with its own grain and shading, tinted as above: the photo enlarged 3-6x so that the image's centre
        # shows a point near the middle of the face; the hand, below the centre, shows the skin a little below that
        # point (about 0.49-0.63 of the crop's height: the nose and the cheeks beside it). Over a worn mask, a point
        # a little above the forehead's (the hand then shows about 0.22-0.34: the forehead, at times the brows).
        if len(textured):
            q = p[textured]
            point_y = torch.where(on_mask[textured], self.FOREHEAD - 0.03, cy0 - 0.7 * ry0)
            material = _enlarged(x[index[textured]], 1 / q[:, 17], (cx0 + q[:, 18]) * 2 - 1,
                                 (point_y + q[:, 19]) * 2 - 1)  # that point, in grid_sample's -1..1
            tint = torch.where(q[:, 20:21].bool(), q[:, 21:24] / skin[textured].clamp(min=1), q[:, 12:15] * q[:, 15:16])
            hand[textured] = material * tint[:, :, None, None]
        worn = worn_face.nonzero().flatten()
        of_mask = p[:, 24].bool().nonzero().flatten()
        if len(of_mask) and len(worn):
            # A worn mask's material: a worn photo of the batch enlarged so that the hand's palm shows the middle of
            # its lower face (where the mask is); read before any hand is drawn below.
            q = p[of_mask]
            donors = worn.to(x.device)[(q[:, 25] * len(worn)).long().clamp(max=len(worn) - 1)]
            zoom = 1 / q[:, 26]
            at_x, at_y = (cx0 + q[:, 27]) * 2 - 1, (cy0 + q[:, 28]) * 2 - 1  # the donor's point, in -1..1
            palm_x, palm_y = q[:, 1] * 2 - 1, q[:, 2] * 2 - 1  # where the hand's palm is on this photo
            hand[of_mask] = _enlarged(x[donors], zoom, at_x - zoom * palm_x, at_y - zoom * palm_y)
        hand = (hand * shading[:, None]).clamp(0, 255)
        x[index] = x[index] * (1 - alpha[:, None]) + hand * alpha[:, None]
        return x, labels


class MaskRestyle(BatchPreset):
    """Redraws a worn or incorrectly worn mask of the photo, with probability p, on the person's own bare photo
    (their ``normal`` photo aligned onto this one, facemask.data.covers): narrower or wider about its middle,
    longer or shorter below its top edge (which stays where it is, so the label stays true), recoloured with its
    own shading and folds in a random colour, and striped. The image becomes the bare photo wearing the redrawn
    mask, so the new mask sits on real skin and nothing of the old one is left: the training set's masks, in shapes
    and looks it never held. Surgical masks made narrow look like N95 cups, made pink like cloth; "worn" has to
    rest on the nose and mouth being covered.

    With ``aug.mask_restyle_slide_p``, a share of the worn masks chosen is also slid down by
    ``aug.mask_restyle_slide`` of its height as found, off the nose onto the mouth or chin, and the label becomes
    "incorrect": the same mask, on the same photo, answered by where it sits and not by how it looks. (A worn
    mask reaches from the nose bridge to the chin, and the nose tip is about 0.4 of the way down, so the default
    0.3-0.6 always leaves the upper half of the nose in view, and often all of it.)

    With ``aug.mask_restyle_arch``, the redrawn mask's top edge is bent into an arch: its corners lowered by that
    share of the mask's height, its middle (on the nose bridge) and its bottom edge kept, like the cup of an N95
    or KN95 mask. The label stays true.

    It needs, beside each image, its bare face and cover (the images carry them as channels 4..7, added by the
    dataset when this preset is on); photos without a cover (bare faces, a person without a bare photo, an
    alignment that failed) are left as they are. Batch mode and the image cache only."""

    def __init__(self, aug: AugConfig):
        for name, most in (("mask_restyle_width", 2), ("mask_restyle_length", 2), ("mask_restyle_slide", 1)):
            low_high = getattr(aug, name)  # (a mask slid more than its height would leave the photo)
            if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1] <= most:
                raise ValueError(f"aug.{name} must be [low, high] with 0 < low <= high <= {most}, got {low_high}")
        self.p, self.width, self.length = aug.mask_restyle_p, tuple(aug.mask_restyle_width), \
            tuple(aug.mask_restyle_length)
        self.colour_p, self.pattern_p = aug.mask_restyle_colour_p, aug.mask_restyle_pattern_p
        self.skin_p = aug.mask_restyle_skin_p
        self.slide_p, self.slide = aug.mask_restyle_slide_p, tuple(aug.mask_restyle_slide)
        self.arch = tuple(aug.mask_restyle_arch)
        if len(self.arch) != 2 or not 0 <= self.arch[0] <= self.arch[1] <= 0.9:
            raise ValueError(f"aug.mask_restyle_arch must be [low, high] with 0 <= low <= high <= 0.9, got {self.arch}")

    def draw(self, rng):
        params = (float(rng.random() < self.p), float(rng.uniform(*self.width)), float(rng.uniform(*self.length)),
                  float(rng.random() < self.colour_p), *(float(v) for v in rng.uniform(0, 255, 3)),
                  float(rng.random() < self.pattern_p), float(rng.uniform(3, 12)), float(rng.uniform(0, math.pi)),
                  float(rng.uniform(0.15, 0.5)))
        # drawn only when on: without them, every image draws what it always drew
        slide = (float(rng.random() < self.slide_p), float(rng.uniform(*self.slide))) if self.slide_p else (0.0, 0.0)
        arch = float(rng.uniform(*self.arch)) if self.arch[1] else 0.0
        return params + slide + (arch,) + self.draw_skin(rng)

    def draw_skin(self, rng) -> tuple[float, ...]:
        """Whether the mask takes the wearer's skin tone, and its tint; nothing drawn when that is off."""
        if not self.skin_p:
            return 0.0, 1.0, 1.0, 1.0
        return float(rng.random() < self.skin_p), *(float(v) for v in rng.uniform(0.9, 1.1, 3))

    def apply(self, x, params):
        raise ConfigError("data.augment preset 'mask_restyle' needs each photo's bare face: it runs through "
                          "apply_covered")

    def apply_covered(self, x: torch.Tensor, covers: torch.Tensor, params: torch.Tensor,
                      labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (N, 3, H, W) float, ``covers`` (N, 4, H, W): bare face RGB and cover alpha, 0..255; returns the
        batch and the labels (changed where a worn mask was slid off the nose)."""
        if self.slide_p and labels is None:
            raise ConfigError("aug.mask_restyle_slide_p changes labels: the batch needs its labels")
        alpha = covers[:, 3] / 255
        chosen = (params[:, 0].to(x.device).bool() & ((alpha > 0.5).flatten(1).sum(1) >= 16)).nonzero().flatten()
        if not len(chosen):
            return x, labels
        p = params[chosen.cpu()].to(x)
        h, w = x.shape[-2:]
        a = alpha[chosen]
        cols = torch.arange(w, device=x.device, dtype=x.dtype) + 0.5
        rows = torch.arange(h, device=x.device, dtype=x.dtype) + 0.5
        centre = (a * cols).sum((1, 2)) / a.sum((1, 2))  # the mask's middle, in pixels
        solid = a > 0.5
        inside, across = solid.any(2), solid.any(1)  # the rows and the columns the mask reaches
        top = torch.where(inside, rows, torch.full_like(rows, h)).amin(1)  # its top edge
        bottom = torch.where(inside, rows, torch.zeros_like(rows)).amax(1)
        height = bottom - top + 1
        slid = p[:, 11].bool()
        if labels is not None:  # only worn masks are slid (an incorrect one moved down stays incorrect: no gain)
            worn = attribute_of(labels[chosen.to(labels.device)] % NUM_CLASSES, "mask") == MASK_NAMES.index("wear")
            slid &= worn.to(slid.device)
        shift = torch.where(slid, p[:, 12] * height, torch.zeros_like(top))  # pixels down (of the mask's height
        # as found, before any lengthening)
        # Where each output pixel (u, v) samples the photo: (c + (u - c) / width) across, about the mask's middle c;
        # down, (top + (v - top - shift) / length), lengthened below the top edge and moved down by shift; then the
        # top edge bent into an arch (its corners lowered by arch * height, the middle and the bottom edge kept).
        # One sampling grid for the three, so the mask is resampled once.
        width, length, arch = (v[:, None, None] for v in (p[:, 1], p[:, 2], p[:, 13]))
        c, t, height = centre[:, None, None], top[:, None, None], height[:, None, None]
        left = torch.where(across, cols, torch.full_like(cols, w)).amin(1)
        right = torch.where(across, cols, torch.zeros_like(cols)).amax(1)
        half = ((right - left + 1) / 2).clamp(min=1)[:, None, None]
        u_src = (c + (cols[None, None, :] - c) / width).expand(len(p), h, w)
        drop = arch * height * (((u_src - c) / half) ** 2).clamp(max=1)
        v_lin = t + (rows[None, :, None] - t - shift[:, None, None]) / length
        v_src = t + (v_lin - t - drop) * height / (height - drop).clamp(min=1)
        grid = torch.stack([2 * u_src / w - 1, 2 * v_src / h - 1], -1)
        moved = F.grid_sample(torch.cat([x[chosen], a[:, None]], 1), grid, padding_mode="zeros",
                              align_corners=False)
        mask, cover = moved[:, :3], moved[:, 3:]
        shade = (mask * _GREY.to(x)[None, :, None, None]).sum(1, keepdim=True)
        mean = (shade * cover).sum((2, 3), keepdim=True) / cover.sum((2, 3), keepdim=True).clamp(min=1e-6)
        recoloured = (shade / mean.clamp(min=1) * p[:, 4:7, None, None]).clamp(0, 255)
        mask = torch.where(p[:, 3, None, None, None].bool(), recoloured, mask)
        toned = p[:, 14].bool()
        if bool(toned.any()):  # in the wearer's own skin tone (the bare face under the mask), tinted a little
            skin = (covers[chosen, :3] * a[:, None]).sum((2, 3)) / a.sum((1, 2))[:, None].clamp(min=1e-6)
            tone = (shade / mean.clamp(min=1) * (skin * p[:, 15:18])[:, :, None, None]).clamp(0, 255)
            mask = torch.where(toned[:, None, None, None], tone, mask)
        along = cols[None, None, :] * p[:, 9, None, None].cos() + rows[None, :, None] * p[:, 9, None, None].sin()
        stripes = (torch.sin(2 * math.pi * along / p[:, 8, None, None]) > 0).to(x)
        mask = mask * (1 - (p[:, 7] * p[:, 10])[:, None, None, None] * stripes[:, None])
        # The redrawn mask goes onto the person's bare photo (aligned onto this one), not onto this photo: the old
        # mask is gone whole, its faint edges and shadows too, which the cover does not reach (left in place, they
        # kept the old mask's outline in view and travelled worse to unseen styles: docs/results.md).
        x[chosen] = covers[chosen, :3] * (1 - cover) + mask * cover
        if labels is not None and bool(slid.any()):
            labels = labels.clone()
            moved_rows = chosen[slid.to(chosen.device)].to(labels.device)
            labels[moved_rows] += (MASK_NAMES.index("incorrect") - MASK_NAMES.index("wear")) * (SHAPE[1] * SHAPE[2])
        return x, labels


class OneImage:
    """A batch preset used one image at a time (``data.augment_mode=per_image``): its parameters are drawn from a
    seed taken from the torch RNG, which the loader seeds per sample, so it is as reproducible as the others."""

    def __init__(self, preset: BatchPreset):
        self.preset = preset

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, ()).item())
        params = torch.tensor([self.preset.draw(np.random.default_rng(seed))], dtype=torch.float64)
        out = self.preset.apply(image[None].float(), params)[0]
        return out.round_().clamp_(0, 255).to(image.dtype)


class Identity(BatchPreset):
    def draw(self, rng):
        return ()

    def apply(self, x, params):
        return x


BATCH_PRESETS: dict[str, Callable[[AugConfig], BatchPreset]] = {
    "base": lambda a: Identity(),
    "centercrop": lambda a: Identity(),  # done at decode time
    "flip": Flip,
    "affine": lambda a: Geometry(a.degrees, a.translate, a.scale, a.shear),
    "colour": Colour,
    "contrast": lambda a: Colour(a, brightness=0, saturation=0, hue=0),
    "grayscale": lambda a: Grayscale(a.grayscale_p),
    "always_grayscale": lambda a: Grayscale(1.0),
    "noise": Noise,
    "erasing": Erasing,
    "framing": lambda a: Geometry(translate=a.framing_translate, scale=a.framing_scale),
    "resized_crop": lambda a: Geometry(crop_scale=tuple(a.crop_scale), crop_ratio=tuple(a.crop_ratio)),
    "blur": Blur,
    "jpeg": Jpeg,
    "temperature": Temperature,
    "lowres": LowResolution,
    "mask_colour": MaskColour,
    "mask_texture": MaskTexture,
    "synthetic_mask": SyntheticMask,
    "hand": Hand,
    "mask_restyle": MaskRestyle,
}
LABELLING = ("synthetic_mask", "hand")  # presets that change or read labels: batch mode only
COVERED = ("mask_restyle",)  # presets that need each photo's bare face and cover (facemask.data.covers)


class BatchAugment:
    """The presets of ``data.augment`` for whole batches: ``augment(images (N, 3, H, W) uint8, seeds (N,))`` ->
    float images in 0..255 on the images' device."""

    def __init__(self, augment: str, aug: AugConfig):
        self.names = preset_names(augment)
        self.presets = []
        for name in self.names:
            try:
                self.presets.append(BATCH_PRESETS[name](aug))
            except (ValueError, TypeError, IndexError) as err:
                raise ConfigError(f"bad aug.* parameters for data.augment preset {name!r}: {err}") from err

    def params(self, seeds: Sequence[int]) -> list[torch.Tensor]:
        """Each preset's parameters (N, k), drawn image by image from each image's own seed."""
        rngs = [np.random.default_rng(int(seed)) for seed in seeds]
        return [torch.tensor([preset.draw(rng) for rng in rngs], dtype=torch.float64).reshape(len(rngs), -1)
                for preset in self.presets]

    def __call__(self, images: torch.Tensor, seeds: torch.Tensor | Sequence[int], labels: torch.Tensor | None = None
                 ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The augmented batch; with ``labels``, (batch, labels) as the labelling presets left them."""
        seeds = seeds.tolist() if isinstance(seeds, torch.Tensor) else list(seeds)
        x = images[:, :3].float()  # a copy: the presets may work in place
        covers = images[:, 3:7].float() if images.shape[1] == 7 else None  # bare face and cover (mask_restyle)
        for name, preset, params in zip(self.names, self.presets, self.params(seeds)):
            if name in COVERED:
                if covers is None:
                    raise ConfigError(f"data.augment preset {name!r} needs the bare faces and covers of the photos")
                x, labels = preset.apply_covered(x, covers, params, labels)
            elif name in LABELLING:
                if labels is None:
                    raise ConfigError(f"data.augment preset {name!r} needs the labels")
                x, labels = preset.apply_labelled(x, params, labels)
            else:
                x = preset.apply(x, params.to(x.device))
        return x.round_() if labels is None else (x.round_(), labels)
