"""data.augment_mode=batch: every preset as a vectorised batch operation, each image from its own seed."""
import numpy as np
import pytest
import torch

from facemask.config import AugConfig, load_config
from facemask.data.batch_transforms import BATCH_PRESETS, BatchAugment
from facemask.data.transforms import PRESETS
from facemask.errors import ConfigError

IMAGES = torch.randint(0, 256, (6, 3, 64, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
SEEDS = torch.tensor([11, 22, 33, 44, 55, 66])
SURE = AugConfig(flip_p=1.0, grayscale_p=1.0, erasing_p=1.0, blur_p=1.0, jpeg_p=1.0, lowres_p=1.0,
                 lowres_factor=[0.4, 0.5], jpeg_quality=[20, 30])


def test_every_per_image_preset_has_a_batch_version():
    assert set(BATCH_PRESETS) == set(PRESETS)


LABELLED = {"synthetic_mask", "mask_restyle", "hand"}  # presets that need labels or covers (tested on their own)


@pytest.mark.parametrize("preset", sorted(set(PRESETS) - {"base", "centercrop"} - LABELLED))
def test_each_batch_preset_changes_the_images_and_depends_only_on_each_images_seed(preset):
    augment = BatchAugment(preset, SURE)
    out = augment(IMAGES, SEEDS)
    assert out.shape == IMAGES.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 255 and torch.equal(out, out.round())
    assert not torch.equal(out, IMAGES.float()), preset
    assert torch.equal(augment(IMAGES, SEEDS), out)  # the same seeds, the same result
    alone = torch.cat([augment(IMAGES[i:i + 1], SEEDS[i:i + 1]) for i in range(len(IMAGES))])
    assert torch.equal(alone, out)  # an image's result does not depend on the batch it is in
    reordered = augment(IMAGES.flip(0), SEEDS.flip(0)).flip(0)
    assert torch.equal(reordered, out)
    if preset not in ("always_grayscale", "flip", "grayscale"):  # with p = 1 these draw nothing that matters
        assert not torch.equal(augment(IMAGES, SEEDS + 1), out)  # other seeds, other draws


def test_batch_presets_do_what_they_say():
    flipped = BatchAugment("flip", AugConfig(flip_p=1.0))(IMAGES, SEEDS)
    assert torch.equal(flipped, IMAGES.float().flip(-1))
    kept = BatchAugment("flip", AugConfig(flip_p=0.0))(IMAGES, SEEDS)
    assert torch.equal(kept, IMAGES.float())
    grey = BatchAugment("always_grayscale", AugConfig())(IMAGES, SEEDS)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    still = BatchAugment("colour", AugConfig(brightness=0, contrast=0, saturation=0, hue=0))(IMAGES, SEEDS)
    assert torch.equal(still, IMAGES.float())  # factors of 1 and no hue shift: the identity
    plain = torch.full((1, 3, 8, 8), 100, dtype=torch.uint8)
    hue_only = BatchAugment("colour", AugConfig(brightness=0, contrast=0, saturation=0, hue=0.5))(plain, [3])
    assert (hue_only - 100).abs().max() <= 1  # a grey image has no hue to shift
    zoomed_out = BatchAugment("framing", AugConfig(framing_scale=[0.5, 0.5], framing_translate=0.0))(IMAGES, SEEDS)
    assert (zoomed_out[:, :, :8] == 128).all() and (zoomed_out[:, :, -8:] == 128).all()  # grey beyond the photo
    centre = zoomed_out[:, :, 24:40, 18:30]
    shrunk = torch.nn.functional.interpolate(IMAGES.float(), scale_factor=0.5, mode="bilinear", antialias=False)
    assert (centre - shrunk[:, :, 8:24, 6:18]).abs().mean() < 25


def test_batch_mode_trains_and_resumes_exactly(tiny_config):
    import os
    import signal

    import pandas as pd

    from facemask.errors import TrainingInterrupted
    from facemask.training.trainer import fit

    cfg = tiny_config("train.epochs=2", "data.batch_size=12", "data.augment_mode=batch",
                      "data.augment=flip,colour,temperature,framing,blur,lowres,jpeg,noise,erasing")
    straight = fit(cfg)

    def interrupt(step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        fit(cfg, on_step=interrupt)
    resumed = fit(resume=info.value.run_dir)
    timing = ["epoch_seconds", "train_images_per_second"]
    pd.testing.assert_frame_equal(pd.read_csv(straight / "metrics.csv").drop(columns=timing),
                                  pd.read_csv(resumed / "metrics.csv").drop(columns=timing), check_exact=True)
    a, b = (torch.load(run / "last.pt", weights_only=True)["model"] for run in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    per_image = fit(tiny_config("train.epochs=2", "data.batch_size=12",
                                "data.augment=flip,colour,temperature,framing,blur,lowres,jpeg,noise,erasing"))
    c = torch.load(per_image / "last.pt", weights_only=True)["model"]
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the batch presets are really in use


def test_bad_augment_mode_and_batch_parameters_are_one_line_errors(tiny_config, tmp_path):
    from facemask.training.trainer import fit

    with pytest.raises(ConfigError, match="data.augment_mode='vector'"):
        fit(tiny_config("data.augment_mode=vector"))
    with pytest.raises(ConfigError, match="aug.lowres_factor"):
        fit(tiny_config("data.augment_mode=batch", "data.augment=lowres", "aug.lowres_factor=[0.5]"))
    assert not (tmp_path / "runs").exists()
    assert np.isfinite(load_config("configs/cpu.yaml").aug.hue)


@pytest.mark.parametrize("preset", ["mask_colour", "mask_texture"])
def test_lower_face_presets_change_the_lower_face_only(preset):
    aug = AugConfig(mask_colour_p=1.0, mask_texture_p=1.0, lower_face=[0.5, 0.62, 0.3, 0.16])
    out = BatchAugment(preset, aug)(IMAGES, SEEDS)
    changed = (out != IMAGES.float()).any(1)  # (N, H, W)
    rows = changed.any(2).float().mean(0)  # share of images changed in each row
    assert changed[:, :20].sum() == 0 and changed[:, 55:].sum() == 0  # eyes and forehead, and below the chin, kept
    assert rows[36:44].min() > 0.5  # around 62% of the height (row 40 of 64) the lower face changed
    assert changed[:, :, :4].sum() == 0 and changed[:, :, -4:].sum() == 0  # nor the sides
    with pytest.raises(ConfigError, match="aug.lower_face"):
        BatchAugment(preset, AugConfig(lower_face=[0.5, 0.6]))


def test_per_image_mode_runs_the_lower_face_presets_reproducibly():
    from facemask.data.dataset import apply_seeded
    from facemask.data.transforms import build_transforms

    train, evaluation = build_transforms("mask_colour,mask_texture", AugConfig(mask_colour_p=1.0,
                                                                               mask_texture_p=1.0))
    image = IMAGES[0]
    first, again = apply_seeded(train, image, 7), apply_seeded(train, image, 7)
    assert first.dtype == torch.uint8 and torch.equal(first, again) and not torch.equal(first, image)
    assert not torch.equal(apply_seeded(train, image, 8), first)
    assert torch.equal(evaluation(image), image)  # training only


def test_synthetic_masks_are_drawn_on_the_lower_face_and_relabel_it_truthfully():
    from facemask.data.labels import decode, encode
    from facemask.models.heads import AGE_BINS
    from facemask.training.losses import pack_ages

    augment = BatchAugment("synthetic_mask", AugConfig(synthetic_mask_p=1.0))
    masks = torch.tensor([2, 2, 2, 2, 0, 1] * 4)  # 16 bare faces, 4 worn, 4 incorrect
    labels = torch.as_tensor(encode(masks.numpy(), np.arange(24) % 2, np.arange(24) % 3))
    images, seeds = IMAGES.repeat(4, 1, 1, 1), torch.arange(24) + 100
    out, new = augment(images, seeds, labels)
    assert (out != images.float()).flatten(1).any(1).all()  # every face got a mask drawn (p = 1)
    new_mask, gender, age = decode(new)
    assert (new_mask[masks == 0] == 0).all()  # over a worn mask only a worn one: the nose stays covered
    assert set(new_mask[masks == 1].tolist()) <= {0, 1} and set(new_mask[masks == 2].tolist()) == {0, 1}
    assert (new_mask != 2).all()  # a drawn mask is never "not wear"
    assert torch.equal(gender, decode(labels)[1]) and torch.equal(age, decode(labels)[2])
    rows = (out != images.float()).any(1).any(2).float().mean(0)
    assert rows[:20].sum() == 0 and rows[36:44].min() > 0.5  # drawn on the lower face
    worn_rows = (out[masks == 0] != images[masks == 0].float()).any(1).any(2).float().mean(0)
    assert worn_rows[27:30].min() > 0.5  # over a worn mask the drawing reaches up over the nose
    packed = torch.as_tensor(pack_ages(labels, np.arange(24) + 20, AGE_BINS))  # the age head's targets
    _, repacked = augment(images, seeds, packed)
    assert torch.equal(repacked // 18, packed // 18) and torch.equal(repacked % 18, new)  # exact ages kept
    with pytest.raises(ConfigError, match="needs data.augment_mode=batch"):
        from facemask.data.loaders import batch_augment

        batch_augment(load_config("configs/tiny.yaml", ["data.augment=flip,synthetic_mask"]), torch.device("cpu"))


def test_a_hand_is_drawn_over_the_mouth_of_bare_faces_only_in_the_faces_own_skin_colour():
    from facemask.data.labels import decode, encode

    face = torch.full((3, 64, 48), 40, dtype=torch.uint8)  # dark surroundings ...
    face[:, 18:34, 12:36] = torch.tensor([200, 150, 120], dtype=torch.uint8)[:, None, None]  # ... skin mid-face
    masks = torch.tensor([2, 2, 2, 2, 0, 1] * 4)  # 16 bare faces, 4 worn, 4 incorrect
    labels = torch.as_tensor(encode(masks.numpy(), np.arange(24) % 2, np.arange(24) % 3))
    images, seeds = face.repeat(24, 1, 1, 1), torch.arange(24) + 500
    augment = BatchAugment("hand", AugConfig(hand_p=1.0, hand_skin_p=0.0, hand_glove_p=0.0))  # one skin colour
    out, new = augment(images, seeds, labels)
    assert torch.equal(new, labels)  # the label stays what it was: "not worn"
    changed = (out != images.float()).any(1)
    assert changed[masks == 2].flatten(1).any(1).all() and not changed[masks != 2].any()  # bare faces only
    rows = changed[masks == 2].float().mean((0, 2))
    assert rows[:14].sum() == 0 and rows[40:44].min() > 0.2  # over the mouth (y 0.62 of 64), never over the eyes
    drawn = out.permute(0, 2, 3, 1)[changed & (out.mean(1) > 60)]  # the hand's own pixels, edges left out
    ratio = drawn / drawn[:, :1]
    skin = torch.tensor([1.0, 0.75, 0.6])
    assert ((ratio - skin).abs() < 0.12).float().mean() > 0.95  # the skin's hue, tinted a little
    assert torch.equal(augment(images, seeds, labels)[0], out)
    alone = torch.cat([augment(images[i:i + 1], seeds[i:i + 1], labels[i:i + 1])[0] for i in range(24)])
    assert torch.equal(alone, out)  # each image from its own seed alone
    assert not torch.equal(augment(images, seeds + 1, labels)[0], out)
    assert torch.equal(BatchAugment("hand", AugConfig(hand_p=0.0))(images, seeds, labels)[0], images.float())
    assert decode(new)[0].tolist() == masks.tolist()
    with pytest.raises(ConfigError, match="aug.hand_size must be"):
        BatchAugment("hand", AugConfig(hand_size=[0.8, 0.5]))
    with pytest.raises(ConfigError, match="needs the labels"):
        augment(images, seeds)
    with pytest.raises(ConfigError, match="needs data.augment_mode=batch"):
        from facemask.data.loaders import batch_augment

        batch_augment(load_config("configs/tiny.yaml", ["data.augment=flip,hand"]), torch.device("cpu"))
    with pytest.raises(ConfigError, match="aug.hand_p"):
        load_config("configs/tiny.yaml", ["aug.hand_p=1.5"]).validate()


def _draws_nothing(draw) -> bool:
    """Whether ``draw(rng)`` leaves the rng as it found it (an option that is off must not shift later draws)."""
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    draw(rng)
    return rng.bit_generator.state == state


def test_hands_are_made_of_the_photos_own_skin_or_of_any_colour_so_that_only_their_shape_tells():
    """aug.hand_skin_p: hands of the face's own skin, enlarged (its grain: lines of a darker tone here);
    aug.hand_glove_p: hands of any colour. When both are 0 nothing is drawn for them from the image's seed."""
    from facemask.data.labels import encode

    face = torch.tensor([200, 150, 120], dtype=torch.uint8)[:, None, None].repeat(1, 128, 96)  # skin, ...
    face[:, ::2] = torch.tensor([150, 112, 90], dtype=torch.uint8)[:, None, None]  # ... with darker lines: its grain
    labels = torch.as_tensor(encode(np.full(16, 2), np.arange(16) % 2, np.arange(16) % 3))  # bare faces
    images, seeds = face.repeat(16, 1, 1, 1), torch.arange(16) + 900

    def hands(on=images, **options):
        return BatchAugment("hand", AugConfig(hand_p=1.0, **options))(on, seeds, labels)[0]

    # where the hands are (their shape and place are drawn before what they are made of): gloves on black images
    gloves = hands(torch.zeros_like(images), hand_skin_p=0.0, hand_glove_p=1.0).amax(1)
    interior = gloves >= 0.97 * gloves.flatten(1).amax(1)[:, None, None]  # the hand less its darker edge
    assert interior.flatten(1).sum(1).min() > 30

    def grain(out):  # the red channel's spread inside each hand
        return torch.stack([out[i, 0][interior[i]].std() for i in range(16)])

    flat, skin = hands(hand_skin_p=0.0, hand_glove_p=0.0), hands(hand_skin_p=1.0, hand_glove_p=0.0)
    assert grain(flat).max() < 4 and grain(skin).min() > 8  # one colour, or the skin's own lines, enlarged
    assert (skin[:, 0][interior] / skin[:, 1][interior] - 200 / 150).abs().median() < 0.1  # in the skin's hue
    assert 3 <= int((grain(hands(hand_skin_p=0.5, hand_glove_p=0.0)) > 8).sum()) <= 13  # some of each
    gloves = hands(hand_skin_p=0.0, hand_glove_p=1.0)
    hues = torch.stack([gloves[i, :, interior[i]].median(1).values for i in range(16)])
    hues = hues / hues.sum(1, keepdim=True)
    assert (hues - torch.tensor([200, 150, 120]) / 470).abs().amax(1).gt(0.05).float().mean() > 0.8  # not skin
    assert hues.std(0).min() > 0.05  # and not one colour either
    both = hands(hand_skin_p=1.0, hand_glove_p=1.0)  # a glove with the skin's grain, in the glove's colour
    def relative_grain(out):  # the brightness's spread inside each hand, relative to its mean (any colour)
        bright = out.sum(1)
        return torch.stack([bright[i][interior[i]].std() / bright[i][interior[i]].mean() for i in range(16)])

    assert relative_grain(flat).max() < 0.02 and relative_grain(both).min() > 0.04
    gloved = torch.stack([both[i, :, interior[i]].median(1).values for i in range(16)])
    assert ((gloved / gloved.sum(1, keepdim=True) - hues).abs().amax(1) < 0.05).float().mean() > 0.8
    from facemask.data.batch_transforms import Hand

    assert _draws_nothing(Hand(AugConfig(hand_skin_p=0.0, hand_glove_p=0.0)).draw_skin)  # nothing when both are off
    assert not _draws_nothing(Hand(AugConfig(hand_skin_p=0.0, hand_glove_p=0.5)).draw_skin)  # ... drawn when either
    with pytest.raises(ConfigError, match="aug.hand_glove_p"):
        load_config("configs/tiny.yaml", ["aug.hand_glove_p=-0.1"]).validate()


def test_hands_can_be_made_of_a_worn_mask_of_the_same_batch():
    """aug.hand_mask_p: the hand's material is the middle of the lower face of a worn photo of the batch (its mask),
    so that only the hand's shape tells it from a mask; without a worn photo in the batch, the usual material."""
    from facemask.data.batch_transforms import Hand
    from facemask.data.labels import encode

    skin = torch.tensor([200, 150, 120], dtype=torch.uint8)[:, None, None].repeat(1, 128, 96)
    masked = skin.clone()
    masked[:, 55:105, 18:78] = torch.tensor([30, 200, 60], dtype=torch.uint8)[:, None, None]  # a green mask
    bare = torch.as_tensor(encode(np.full(12, 2), np.arange(12) % 2, np.arange(12) % 3))
    worn = torch.as_tensor(encode(np.zeros(2, int), np.arange(2), np.arange(2)))
    images = torch.cat([skin.repeat(12, 1, 1, 1), masked[None].repeat(2, 1, 1, 1)])
    images[13, :, 55:105, 18:78] = torch.tensor([30, 60, 200], dtype=torch.uint8)[:, None, None]  # the other blue
    labels, seeds = torch.cat([bare, worn]), torch.arange(14) + 300

    def hands(labels=labels, **options):
        out = BatchAugment("hand", AugConfig(hand_p=1.0, **options))(images, seeds, labels)[0]
        hand = (out != images.float()).any(1)[:12]
        return out[:12].permute(0, 2, 3, 1)[hand]  # the bare faces' hand pixels

    def green_or_blue(pixels):
        return ((pixels[:, 1] > 1.8 * pixels[:, 0]) | (pixels[:, 2] > 1.8 * pixels[:, 0])).float().mean()

    of_masks = hands(hand_mask_p=1.0)
    assert green_or_blue(of_masks) > 0.8  # the masks' material, not skin or a glove (the soft edges blend)
    out = BatchAugment("hand", AugConfig(hand_p=1.0, hand_mask_p=1.0))(images, seeds, labels)[0]
    assert torch.equal(out[12:], images[12:].float())  # the worn photos lend their mask and keep it
    colours = [(out[i] != images[i].float()).any(0) for i in range(12)]
    greener = [bool(out[i, 1][colours[i]].mean() > out[i, 2][colours[i]].mean()) for i in range(12)]
    assert 0 < sum(greener) < 12  # some hands of one mask, some of the other (chosen by each image's seed)
    assert green_or_blue(hands(hand_mask_p=0.0, hand_glove_p=0.0)) == 0  # off: skin as before
    assert green_or_blue(hands(labels=torch.cat([bare, bare[:2]]), hand_mask_p=1.0, hand_glove_p=0.0)) == 0
    # ... and a batch without a worn photo gives them the material drawn for them otherwise
    # where the material comes from: the donor's lower face about its middle, enlarged about the hand's palm. On
    # black bare faces, with donors whose red and green grow with the column and the row, the hand's red / green at
    # each of its pixels (shading and edges scale both) tells which point of the donor it shows.
    rows, cols = torch.meshgrid(torch.arange(128.0), torch.arange(96.0), indexing="ij")
    gradient = torch.stack([2 * cols + 10, 2 * rows - 20, torch.zeros_like(rows)]).round().to(torch.uint8)
    black = torch.cat([torch.zeros(12, 3, 128, 96, dtype=torch.uint8), gradient[None].repeat(2, 1, 1, 1)])
    aug = AugConfig(hand_p=1.0, hand_mask_p=1.0)
    out = BatchAugment("hand", aug)(black, seeds, labels)[0]
    cx0, cy0 = aug.lower_face[:2]
    errors = []
    for i in range(12):
        q = Hand(aug).draw(np.random.default_rng(int(seeds[i])))
        y, x = (out[i, 1] > 30).nonzero(as_tuple=True)
        source_x = cx0 + q[27] + ((x + 0.5) / 96 - q[1]) / q[26]  # the donor's point, in fractions
        source_y = cy0 + q[28] + ((y + 0.5) / 128 - q[2]) / q[26]
        expected = (2 * (source_x * 96 - 0.5) + 10) / (2 * (source_y * 128 - 0.5) - 20)
        errors.append((out[i, 0, y, x] / out[i, 1, y, x] / expected - 1).abs().median())
    assert max(errors) < 0.02
    assert _draws_nothing(Hand(AugConfig(hand_mask_p=0.0)).draw_mask)  # nothing drawn for it when it is off
    assert not _draws_nothing(Hand(AugConfig(hand_mask_p=0.5)).draw_mask)
    with pytest.raises(ConfigError, match="aug.hand_mask_p"):
        load_config("configs/tiny.yaml", ["aug.hand_mask_p=2"]).validate()


def test_worn_masks_can_get_a_hand_too_and_stay_worn():
    """aug.hand_worn_p: a share of the correctly worn masks also get a hand over the mouth, in the skin of the
    forehead (the middle of the face is the mask), and keep their label; incorrectly worn masks never get one."""
    from facemask.data.batch_transforms import Hand
    from facemask.data.labels import decode, encode

    face = torch.tensor([200, 150, 120], dtype=torch.uint8)[:, None, None].repeat(1, 128, 96)  # skin
    face[:, 55:, 10:86] = torch.tensor([30, 200, 60], dtype=torch.uint8)[:, None, None]  # a green mask
    masks = torch.tensor([0, 1, 2] * 8)
    labels = torch.as_tensor(encode(masks.numpy(), np.arange(24) % 2, np.arange(24) % 3))
    images, seeds = face.repeat(24, 1, 1, 1), torch.arange(24) + 700

    def hands(**options):
        options = {"hand_skin_p": 0.0, "hand_glove_p": 0.0, **options}
        out, new = BatchAugment("hand", AugConfig(hand_p=1.0, **options))(images, seeds, labels)
        assert torch.equal(new, labels) and decode(new)[0].tolist() == masks.tolist()  # labels kept
        return out, (out != images.float()).any(1).flatten(1).any(1)

    out, changed = hands(hand_worn_p=1.0)
    assert changed[masks != 1].all() and not changed[masks == 1].any()  # worn and bare faces, never incorrect
    worn = (masks == 0).nonzero().flatten()
    on_mask = torch.stack([out[i][:, (out[i] != images[i].float()).any(0)].median(1).values for i in worn])
    assert (on_mask[:, 1] < on_mask[:, 0]).all()  # the forehead's skin (red above green), not the mask's green
    out, _ = hands(hand_worn_p=1.0, hand_skin_p=1.0)  # the same with the skin's grain: the forehead's, enlarged
    on_mask = torch.stack([out[i][:, (out[i] != images[i].float()).any(0)].median(1).values for i in worn])
    assert (on_mask[:, 1] < on_mask[:, 0]).all()
    _, changed = hands()
    assert not changed[masks == 0].any()  # off by default: bare faces only
    half = AugConfig(hand_p=1.0, hand_skin_p=0.0, hand_glove_p=0.0, hand_worn_p=0.5)
    drawn = [bool(Hand(half).draw(np.random.default_rng(int(seeds[i])))[29]) for i in worn]
    assert 0 < sum(drawn) < len(worn)  # (these seeds draw some of each)
    assert hands(hand_worn_p=0.5)[1][worn].tolist() == drawn  # the worn masks that drew one get one
    assert _draws_nothing(Hand(AugConfig(hand_worn_p=0.0)).draw_worn)  # nothing drawn for it when it is off
    assert not _draws_nothing(Hand(AugConfig(hand_worn_p=0.5)).draw_worn)
    with pytest.raises(ConfigError, match="aug.hand_worn_p"):
        load_config("configs/tiny.yaml", ["aug.hand_worn_p=-1"]).validate()


def test_face_frame_presets_run_first_whatever_their_place_in_the_list():
    """aug.lower_face is where the mask is in the face crop: a preset that moves or degrades the image (framing,
    blur, JPEG) must run after the presets drawn there, or a drawn mask would miss the face it labels."""
    from facemask.data.transforms import preset_names

    assert preset_names("flip,framing,blur,mask_colour,hand,synthetic_mask") == [
        "synthetic_mask", "hand", "mask_colour", "flip", "framing", "blur"]
    aug = AugConfig(mask_colour_p=1.0, framing_translate=0.3, framing_scale=[0.6, 0.7], blur_p=1.0)
    late = BatchAugment("framing,blur,mask_colour", aug)(IMAGES, SEEDS)
    early = BatchAugment("mask_colour,framing,blur", aug)(IMAGES, SEEDS)
    assert torch.equal(late, early)
    moved = BatchAugment("framing", aug)(IMAGES, SEEDS)
    assert not torch.equal(late, moved)


def test_synthetic_masks_of_photo_material_come_from_the_photo_itself():
    from facemask.data.labels import decode, encode

    grey = torch.full((8, 3, 64, 48), 100, dtype=torch.uint8)
    labels = torch.as_tensor(encode(np.full(8, 2), np.zeros(8, int), np.zeros(8, int)))  # bare faces
    seeds = torch.arange(8) + 300
    photo = BatchAugment("synthetic_mask", AugConfig(synthetic_mask_p=1.0, synthetic_mask_photo_p=1.0))
    out, new = photo(grey, seeds, labels)
    drawn = (out != 100).any(1)
    assert drawn.flatten(1).any(1).all() and set(decode(new)[0].tolist()) <= {0, 1}
    values = out.permute(0, 2, 3, 1)[drawn]  # grey material, tinted and shaded: never a saturated colour
    assert values.min() >= 100 * 0.6 * 0.5 and values.max() <= 100 * 1.4 * 1.6
    coloured, _ = BatchAugment("synthetic_mask", AugConfig(synthetic_mask_p=1.0, synthetic_mask_photo_p=0.0))(
        grey, seeds, labels)
    spread = coloured.permute(0, 2, 3, 1)[(coloured != 100).any(1)]
    assert spread.max() > 100 * 1.4 * 1.6 or spread.min() < 100 * 0.6 * 0.5  # random colours reach far beyond
    alone = [photo(IMAGES[i:i + 1], SEEDS[i:i + 1], labels[i:i + 1]) for i in range(len(IMAGES))]
    together = photo(IMAGES, SEEDS, labels[:len(IMAGES)])
    assert torch.equal(torch.cat([a[0] for a in alone]), together[0])  # each image from its own seed alone
    assert torch.equal(torch.cat([a[1] for a in alone]), together[1])
