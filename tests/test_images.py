import os

import numpy as np
import pytest
from PIL import Image

from facemask.data.images import build_cache, load_image
from facemask.data.layout import read_train
from facemask.errors import DataError


def _files(demo_root, n=10):
    return read_train(demo_root / "train").file.tolist()[:n]


def test_cache_pixels_identical_to_uncached_decode(demo_root, tmp_path):
    files = _files(demo_root)
    pixels, bad = build_cache(files, (64, 48), tmp_path, progress=False)
    assert bad == []
    assert pixels.shape == (len(files), 64, 48, 3) and pixels.dtype == np.uint8
    for row, file in enumerate(files):
        np.testing.assert_array_equal(pixels[row], load_image(file, (64, 48)))


def test_cache_is_reused_and_invalidated_by_a_changed_file(demo_copy, tmp_path):
    files = _files(demo_copy)
    cache = tmp_path / "cache"
    first, _ = build_cache(files, (64, 48), cache, progress=False)
    built = sorted(cache.glob("*.npy"))
    stamp = built[0].stat().st_mtime_ns
    again, _ = build_cache(files, (64, 48), cache, progress=False)
    assert sorted(cache.glob("*.npy")) == built and built[0].stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first, again)
    # Change one file's pixels (and so its size/mtime): the cache must re-read it.
    Image.new("RGB", (384, 512), (255, 0, 0)).save(files[2])
    os.utime(files[2], ns=(stamp + 10**9, stamp + 10**9))
    changed, _ = build_cache(files, (64, 48), cache, progress=False)
    assert len(list(cache.glob("*.npy"))) == 2
    assert (np.abs(changed[2].astype(int) - [255, 0, 0]) < 8).all(axis=-1).mean() > 0.95
    np.testing.assert_array_equal(changed[3], first[3])


def test_other_sizes_get_their_own_cache(demo_root, tmp_path):
    files = _files(demo_root, 3)
    assert build_cache(files, (32, 24), tmp_path, progress=False)[0].shape[1:3] == (32, 24)
    assert build_cache(files, (64, 48), tmp_path, progress=False)[0].shape[1:3] == (64, 48)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_any_colour_mode_becomes_rgb(tmp_path, mode):
    image = Image.new("RGB", (40, 60), (200, 30, 30)).convert(mode)
    path = tmp_path / f"img.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
    image.save(path)
    array = load_image(path, (30, 20))
    assert array.shape == (30, 20, 3)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (60, 40), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 30, 40))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    array = load_image(path)
    assert array.shape == (60, 40, 3)  # displayed upright: portrait
    assert array[:25].mean() > 200 and array[35:].mean() < 50


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 not really a jpeg"])
def test_corrupt_images_name_the_file(tmp_path, content):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError, match="broken.jpg"):
        load_image(path, (32, 24))


def test_truncated_jpeg_names_the_file(demo_root, tmp_path):
    data = open(_files(demo_root, 1)[0], "rb").read()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="truncated.jpg"):
        load_image(path, (64, 48))


def test_cache_reports_bad_images_and_remembers_them(demo_copy, tmp_path):
    files = _files(demo_copy)
    open(files[4], "wb").write(b"garbage")
    for _ in range(2):  # built, then reused
        pixels, bad = build_cache(files, (64, 48), tmp_path, progress=False)
        assert [file for file, _ in bad] == [files[4]] and "cannot be decoded" in bad[0][1]
        assert not pixels[4].any()
