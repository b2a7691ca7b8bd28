"""The mask_restyle preset: each mask found from the person's own bare photo (facemask.data.covers), then redrawn."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from facemask.config import AugConfig, load_config
from facemask.data.batch_transforms import BatchAugment
from facemask.data.covers import align, cover_of, find_covers, pairs_of
from facemask.errors import ConfigError


def _face(h=128, w=96, seed=0) -> np.ndarray:
    """A smooth random 'face' (float, 0..255): structure everywhere, so an alignment has something to fit."""
    noise = torch.rand(1, 3, 16, 12, generator=torch.Generator().manual_seed(seed)) * 200 + 30
    return F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).clamp(
        0, 255).numpy()


def _shifted(image: np.ndarray, dx: float, dy: float, scale: float) -> np.ndarray:
    theta = torch.tensor([[[1 / scale, 0, dx], [0, 1 / scale, dy]]], dtype=torch.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)[0].permute(1, 2, 0).numpy()


def _masked(bare: np.ndarray, top=70, bottom=110, left=25, right=71, colour=(40, 90, 200)) -> np.ndarray:
    photo = bare.copy()
    photo[top:bottom, left:right] = colour
    return photo


def test_the_bare_face_is_aligned_onto_the_masked_photo_and_the_mask_is_where_they_differ():
    bare = _face()
    moved = _shifted(bare, 0.05, -0.04, 1.06)  # the person moved a little between the two photos
    photo = _masked(moved)
    aligned = align(torch.from_numpy(bare).permute(2, 0, 1)[None], torch.from_numpy(photo).permute(2, 0, 1)[None])
    aligned = aligned[0].permute(1, 2, 0).numpy()
    outside = np.ones(bare.shape[:2], bool)
    outside[66:114, 21:75] = False
    outside[:8], outside[-8:], outside[:, :8], outside[:, -8:] = False, False, False, False  # borders: smeared
    assert np.abs(aligned - moved)[outside].mean() < 4  # the bare face now matches the photo
    assert np.abs(bare - moved)[outside].mean() > 4 * np.abs(aligned - moved)[outside].mean()  # it did not before
    cover = cover_of(aligned, photo) > 0.5
    truth = np.zeros_like(cover)
    truth[70:110, 25:71] = True
    assert (cover & truth).sum() / (cover | truth).sum() > 0.85
    assert not cover_of(aligned, moved).any()  # no mask, no cover
    assert not cover_of(bare * 0 + 128, photo).any()  # a bare face that does not match: no cover, not a wrong one
    poor = np.clip(aligned + np.where(np.indices(bare.shape[:2]).sum(0) % 2 == 0, 18, -18)[..., None], 0, 255)
    assert not cover_of(poor, photo).any()  # matched badly everywhere (a failed alignment): no cover either


def test_covers_are_found_for_masked_photos_of_people_with_a_bare_photo_only():
    bare = _face(seed=1)
    samples = pd.DataFrame({"person": ["a", "a", "a", "b", "c", "c"], "mask": [0, 1, 2, 0, 0, 2],
                            "file": ["a1", "a2", "a3", "b1", "c1", "c2"]})
    assert pairs_of(samples) == [(0, 2), (1, 2), (4, 5)]  # person b has no bare photo
    assert pairs_of(samples, {"c2"}) == [(0, 2), (1, 2)]  # an undecodable bare photo is no bare face
    moved = _shifted(bare, -0.04, 0.03, 0.95)
    pixels = np.stack([_masked(moved), _masked(bare, top=90), bare, _masked(bare), _masked(bare), bare]
                      ).round().astype(np.uint8)
    covers = find_covers(pixels, pairs_of(samples, {"c2"}))
    assert covers.shape == (6, 128, 96, 4) and covers.dtype == np.uint8
    assert not covers[2:].any()  # the bare photo, person b and person c: nothing
    for row, top, under in ((0, 70, moved), (1, 90, bare)):
        cover = covers[row, ..., 3] > 127
        assert cover[top + 2:108, 27:69].all() and not cover[:top - 3].any() and not cover[:, :20].any()
        assert np.abs(covers[row, 8:top - 3, 8:-8, :3].astype(float) - under[8:top - 3, 8:-8]).mean() < 3


def test_covers_are_cached_beside_the_image_cache_and_found_again_when_the_labels_change(tmp_path):
    from facemask.data.covers import covers_found, load_covers
    from facemask.errors import DataError

    bare = _face(seed=2)
    path = tmp_path / "abc-128x96.npy"
    np.save(path, np.stack([_masked(bare), bare]).round().astype(np.uint8))
    pixels = np.load(path, mmap_mode="r")
    samples = pd.DataFrame({"person": ["a", "a"], "mask": [0, 2], "file": ["a1", "a2"]})
    covers = load_covers(pixels, samples, progress=False)
    assert covers[0, ..., 3].any() and covers_found(pixels, samples) == (1, 1)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and not any(name.startswith(".") for name in files)  # npy + json, no temporary left
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert np.array_equal(load_covers(pixels, samples, progress=False), covers)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before  # reused, not found again
    swapped = samples.assign(mask=[2, 0])  # a correction swapped the two photos' labels
    again = load_covers(pixels, swapped, progress=False)  # the first photo is now the bare one
    assert not again[0].any() and again[1, ..., 3].any() and len(list(tmp_path.iterdir())) == 5
    with pytest.raises(DataError, match="data.cache must be true"):
        load_covers(np.load(path), samples, progress=False)


def _batch(n=6, seed=0):
    """Photos with a mask (rows 40..70 of 96, columns 14..38 of 64: left of the middle) on a face, the person's
    bare face (another random face, so that it shows wherever it is used) and the cover."""
    photo = torch.from_numpy(_face(96, 64, seed)).permute(2, 0, 1)
    bare = torch.from_numpy(_face(96, 64, seed + 100)).permute(2, 0, 1)
    photo[:, 40:70, 14:38] = torch.tensor([200.0, 200.0, 200.0])[:, None, None] * \
        (0.8 + 0.2 * torch.rand(30, 24, generator=torch.Generator().manual_seed(seed)))
    alpha = torch.zeros(1, 96, 64)
    alpha[:, 40:70, 14:38] = 255
    images = torch.cat([photo, bare, alpha]).round().to(torch.uint8)
    return images[None].repeat(n, 1, 1, 1)


def test_mask_restyle_draws_the_mask_narrower_and_longer_below_its_top_edge_on_the_persons_bare_photo():
    images = _batch()
    aug = AugConfig(mask_restyle_p=1.0, mask_restyle_width=[0.5, 0.5], mask_restyle_length=[1.2, 1.2],
                    mask_restyle_colour_p=0.0, mask_restyle_pattern_p=0.0)
    out = BatchAugment("mask_restyle", aug)(images, torch.arange(6))
    assert out.shape == (6, 3, 96, 64)
    bare, photo = images[:, 3:6].float(), images[:, :3].float()
    masked = (out - bare).abs().amax(1) > 30  # where a mask is now: the rest is the person's bare photo
    rows, cols = masked[0].nonzero(as_tuple=True)
    assert rows.min() in (39, 40, 41)  # the top edge did not move: a worn mask stays worn
    assert 74 <= rows.max() <= 77  # 30 rows long, made 1.2x longer below the top
    assert 10 <= cols.max() - cols.min() + 1 <= 14  # 24 columns wide, made half as wide ...
    assert 24 <= (cols.max() + cols.min() + 1) / 2 <= 28  # ... about its own middle (26), not the photo's (32)
    beyond = ~masked
    beyond[:, 38:80, 12:40] = False  # (the new mask's soft edge)
    assert torch.allclose(out[beyond[:, None].expand_as(out)], bare[beyond[:, None].expand_as(out)], atol=0.5)
    assert (out[:, :, 60:69, 14:38] - photo[:, :, 60:69, 14:38]).abs().amax(1).gt(30).any()  # old mask gone there
    kept = BatchAugment("mask_restyle", AugConfig(mask_restyle_p=0.0))(images, torch.arange(6))
    assert torch.equal(kept, photo)


def test_mask_restyle_recolours_and_stripes_with_the_masks_own_shading_from_each_images_seed():
    images = _batch()
    aug = AugConfig(mask_restyle_p=1.0, mask_restyle_width=[1.0, 1.0], mask_restyle_length=[1.0, 1.0],
                    mask_restyle_colour_p=1.0, mask_restyle_pattern_p=0.0)
    augment = BatchAugment("mask_restyle", aug)
    out = augment(images, torch.arange(6) + 10)
    inside = out[:, :, 45:65, 18:34]
    assert (inside.std(dim=(2, 3)) > 0).all()  # the folds (shading) stay
    assert len({tuple(c.round().tolist()) for c in inside.mean(dim=(2, 3))}) == 6  # six seeds, six colours
    own = images[:, :3, 45:65, 18:34].float().mean(1)
    shade = inside.mean(1)
    for i in range(6):  # brighter where it was brighter
        assert np.corrcoef(own[i].flatten().numpy(), shade[i].flatten().numpy())[0, 1] > 0.9
    assert torch.equal(augment(images, torch.arange(6) + 10), out)
    alone = torch.cat([augment(images[i:i + 1], torch.arange(6)[i:i + 1] + 10) for i in range(6)])
    assert torch.equal(alone, out)  # each image from its own seed alone
    striped = BatchAugment("mask_restyle", AugConfig(mask_restyle_p=1.0, mask_restyle_width=[1.0, 1.0],
                                                     mask_restyle_length=[1.0, 1.0], mask_restyle_colour_p=0.0,
                                                     mask_restyle_pattern_p=1.0))(images, torch.arange(6))
    assert (striped[:, :, 40:70, 14:38] < images[:, :3, 40:70, 14:38].float() - 10).any(1).flatten(1).any(1).all()


def test_mask_restyle_recolours_some_masks_in_the_wearers_own_skin_tone():
    """aug.mask_restyle_skin_p: a mask in the colour of the skin it covers (the bare face under it), with its own
    shading, so that a model cannot tell a hand over the mouth from a mask by its skin colour alone."""
    images = _batch()
    aug = dict(mask_restyle_p=1.0, mask_restyle_width=[1.0, 1.0], mask_restyle_length=[1.0, 1.0],
               mask_restyle_colour_p=1.0, mask_restyle_pattern_p=0.0)
    toned = BatchAugment("mask_restyle", AugConfig(**aug, mask_restyle_skin_p=1.0))(images, torch.arange(6) + 10)
    other = BatchAugment("mask_restyle", AugConfig(**aug))(images, torch.arange(6) + 10)  # a random colour
    skin = images[:, 3:6, 40:70, 14:38].float().mean((2, 3))  # the bare face under the mask
    ratio = toned[:, :, 45:65, 18:34].mean((2, 3)) / skin
    assert ((ratio > 0.85) & (ratio < 1.15)).all()  # the skin's colour, tinted a little
    assert (other[:, :, 45:65, 18:34].mean((2, 3)) / skin - 1).abs().amax(1).gt(0.15).all()
    shade = toned[:, :, 45:65, 18:34].mean(1)
    own = images[:, :3, 45:65, 18:34].float().mean(1)
    for i in range(6):  # the mask's own folds, brighter where it was brighter
        assert np.corrcoef(own[i].flatten().numpy(), shade[i].flatten().numpy())[0, 1] > 0.9
    half = BatchAugment("mask_restyle", AugConfig(**aug, mask_restyle_skin_p=0.5)).params(range(40))[0][:, 14]
    assert 8 <= int(half.sum()) <= 32
    from facemask.data.batch_transforms import MaskRestyle

    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert MaskRestyle(AugConfig(**aug)).draw_skin(rng) == (0.0, 1.0, 1.0, 1.0)
    assert rng.bit_generator.state == state  # off: nothing drawn for it, so later presets keep their draws
    with pytest.raises(ConfigError, match="aug.mask_restyle_skin_p"):
        load_config("configs/tiny.yaml", ["aug.mask_restyle_skin_p=2"]).validate()


def test_mask_restyle_slides_worn_masks_off_the_nose_and_labels_them_incorrect():
    images = _batch()
    labels = torch.tensor([2, 3, 0, 8, 9, 6])  # three worn masks, then three incorrectly worn ones
    aug = AugConfig(mask_restyle_p=1.0, mask_restyle_width=[1.0, 1.0], mask_restyle_length=[1.0, 1.0],
                    mask_restyle_colour_p=0.0, mask_restyle_pattern_p=0.0, mask_restyle_slide_p=1.0,
                    mask_restyle_slide=[0.5, 0.5])
    out, new = BatchAugment("mask_restyle", aug)(images, torch.arange(6), labels)
    assert new.tolist() == [8, 9, 6, 8, 9, 6]  # worn -> incorrect, gender and age kept; incorrect stays
    masked = (out - images[:, 3:6].float()).abs().amax(1) > 30
    for i in range(6):
        rows = masked[i].nonzero(as_tuple=True)[0]
        top = 40 + 15 if i < 3 else 40  # 30 rows long: half of it down, or not moved
        assert abs(rows.min() - top) <= 1 and abs(rows.max() - (top + 29)) <= 1
    assert torch.equal(labels, torch.tensor([2, 3, 0, 8, 9, 6]))  # the caller's labels are not changed in place
    with pytest.raises(ConfigError, match="changes labels"):
        BatchAugment("mask_restyle", aug)(images, torch.arange(6))


def test_mask_restyle_arches_the_top_edge_keeping_its_middle_and_the_bottom_edge():
    images = _batch()
    aug = AugConfig(mask_restyle_p=1.0, mask_restyle_width=[1.0, 1.0], mask_restyle_length=[1.0, 1.0],
                    mask_restyle_colour_p=0.0, mask_restyle_pattern_p=0.0, mask_restyle_arch=[0.5, 0.5])
    out = BatchAugment("mask_restyle", aug)(images, torch.arange(6))
    masked = (out - images[:, 3:6].float()).abs().amax(1) > 30
    middle, corner = masked[:, :, 25:27], masked[:, :, 15:17]  # the mask spans columns 14..37, its middle 26
    first = lambda m: m.any(2).float().argmax(1)  # noqa: E731  (first row with the mask, per image)
    last = lambda m: 95 - m.any(2).flip(1).float().argmax(1)  # noqa: E731
    assert ((first(middle) - 40).abs() <= 1).all()  # the top edge's middle stays on the nose
    assert (first(corner) >= 49).all()  # its corners come down (0.5 x 30 rows x (10.5 / 12)^2 = 11.5)
    assert ((last(middle) - 69).abs() <= 1).all() and ((last(corner) - 69).abs() <= 1).all()  # the bottom stays
    with pytest.raises(ConfigError, match="aug.mask_restyle_arch must be"):
        BatchAugment("mask_restyle", AugConfig(mask_restyle_arch=[0.5, 0.2]))


def test_photos_without_a_cover_are_left_as_they_are():
    images = _batch()
    images[:, 6] = 0  # no cover found (a bare face, or no bare photo of the person)
    out = BatchAugment("mask_restyle", AugConfig(mask_restyle_p=1.0))(images, torch.arange(6))
    assert torch.equal(out, images[:, :3].float())


def test_mask_restyle_needs_batch_mode_the_image_cache_the_covers_and_sane_parameters():
    from facemask.data.loaders import batch_augment

    for overrides, message in (
            (["data.augment=mask_restyle,flip", "data.augment_mode=per_image"], "needs data.augment_mode=batch"),
            (["data.augment=mask_restyle", "data.augment_mode=batch", "data.cache=false"], "needs data.cache=true"),
            (["data.augment=mask_restyle", "data.augment_mode=batch", "aug.mask_restyle_width=[1.2,0.8]"],
             "aug.mask_restyle_width must be"),
            (["data.augment=mask_restyle", "data.augment_mode=batch", "aug.mask_restyle_p=1.5"],
             r"aug.mask_restyle_p=1.5 must be a probability"),
            (["data.augment=mask_restyle", "data.augment_mode=batch", "aug.mask_restyle_slide=[0,0.5]"],
             "aug.mask_restyle_slide must be"),
            (["data.augment=mask_restyle", "data.augment_mode=batch", "aug.mask_restyle_slide_p=2"],
             r"aug.mask_restyle_slide_p=2.0 must be a probability")):
        with pytest.raises(ConfigError, match=message):
            batch_augment(load_config("configs/tiny.yaml", overrides).validate(), torch.device("cpu"))
    with pytest.raises(ConfigError, match="needs the bare faces"):
        BatchAugment("mask_restyle", AugConfig())(_batch()[:, :3], torch.arange(6))


def _sittings(root) -> None:
    """Rewrite a demo training set so that each person's seven photos are one sitting (as in the competition and
    the stand-in): one face, moved a little from photo to photo, with a mask drawn over its lower part (high for
    a worn one, low for an incorrect one). The demo generator's photos of a person differ in pose, light and
    background, so that no photo of a person can be aligned with another (no cover is found there)."""
    from PIL import Image, ImageDraw

    from facemask.data.layout import read_train

    samples = read_train(root)
    rng = np.random.default_rng(0)
    for index, (person, rows) in enumerate(samples.groupby("person")):
        face = Image.fromarray(_face(512, 384, seed=index).round().astype(np.uint8))
        for file, mask in zip(rows["file"], rows["mask"]):
            dx, dy = rng.integers(-8, 9, 2)
            photo = face.transform(face.size, Image.AFFINE, (1, 0, int(dx), 0, 1, int(dy)), resample=Image.BILINEAR)
            if mask != 2:
                top = 250 if mask == 0 else 340
                colour = [(0, 0, 0), (255, 255, 255), (250, 20, 20), (20, 20, 250), (20, 250, 20)][rng.integers(5)]
                ImageDraw.Draw(photo).rectangle([110 - dx, top - dy, 274 - dx, 420 - dy], fill=colour)
            photo.save(file)


def test_training_with_mask_restyle_finds_each_mask_and_redraws_it(demo_copy, tmp_path):
    from facemask.data.covers import covers_found
    from facemask.data.layout import read_train
    from facemask.data.loaders import load_pixels
    from facemask.training.distributed import Dist
    from facemask.training.trainer import build_loaders, fit, prepare_data

    _sittings(demo_copy / "train")
    cfg = load_config("configs/tiny.yaml", [
        f"data.root={demo_copy / 'train'}", f"train.output_dir={tmp_path / 'runs'}", "data.val_fraction=0.34",
        f"data.cache_dir={tmp_path / 'cache'}", "data.augment=mask_restyle,flip", "data.augment_mode=batch",
        "aug.mask_restyle_p=1.0"])
    run = fit(cfg)
    assert (run / "best.pt").exists()
    samples = read_train(cfg.data.root)
    pixels, _ = load_pixels(samples["file"], cfg, progress=False)
    masked, found = covers_found(pixels, samples)
    assert masked == int((samples["mask"] != 2).sum()) and found >= 0.9 * masked
    data = prepare_data(cfg, Dist())  # what the training loop is given: each photo with its own cover
    loaders = build_loaders(cfg, data, data.train, torch.device("cpu"), Dist())
    dataset = loaders.train.dataset
    for index in range(0, len(dataset), 5):
        image, label, _ = dataset[(index, 1)]
        row = int(np.flatnonzero(samples["file"] == data.train["file"].iloc[index])[0])
        assert torch.equal(image[:3], torch.from_numpy(np.array(pixels[row])).permute(2, 0, 1))
        assert torch.equal(image[3:], torch.from_numpy(np.array(data.covers[row])).permute(2, 0, 1))
    images, labels, seeds = next(iter(loaders.train))
    out, same_labels = loaders.augment(images, seeds, labels)
    assert torch.equal(same_labels, labels) and out.shape[1] == 3
    covered = images[:, 6] > 127
    photos = images[:, :3].float()
    kept = torch.tensor([torch.equal(o, p) or torch.equal(o, p.flip(-1)) for o, p in zip(out, photos)])
    has_cover = covered.flatten(1).any(1)
    assert has_cover.any() and (~has_cover).any()
    assert not kept[has_cover].any() and kept[~has_cover].all()  # covered photos redrawn, the others only flipped
    val_images, _ = next(iter(loaders.val))
    assert val_images.shape[1] == 3  # validation sees photos only
