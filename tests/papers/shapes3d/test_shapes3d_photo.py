"""Open picture...: a photo of one object on a plain background becomes the model's input picture, with a report of
what was done; a picture with no object or a busy background is refused in one line. Synthetic photos, headless."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from explorer.core.errors import UserError
from explorer.papers.shapes3d import photo as P

RNG = np.random.default_rng(0)


def _chair_photo(w: int = 812, h: int = 604, noise: float = 6.0, bg=(245, 245, 245), fg=(40, 30, 25)) -> np.ndarray:
    """A dark 'chair' (a back, a seat and two legs, 220 px wide, 410 px tall) on a plain background, with noise."""
    a = np.empty((h, w, 3), np.float32)
    a[:] = bg
    a[100:300, 300:330] = fg  # back
    a[280:330, 300:520] = fg  # seat
    a[330:510, 305:325] = fg  # legs
    a[330:510, 495:515] = fg
    a[200:206, 310:316] = bg  # a small highlight inside the back: a hole to fill
    a += RNG.normal(0.0, noise, a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def _bbox(pic: np.ndarray, level: float = 0.1):
    ys, xs = np.nonzero(pic > level)
    return ys.min(), ys.max(), xs.min(), xs.max()


def test_a_dark_object_on_white_is_masked_cropped_resized_and_reported():
    pic, report = P.prepare_photo(Image.fromarray(_chair_photo()), 32, fill=1.0, grey=None)
    assert pic.shape == (32, 32) and pic.dtype == np.float32
    # the renderer's style: black background, the object in one grey, its taller side spanning the frame
    assert pic[0, 0] == 0.0 and pic[:, :2].max() == 0.0  # the chair is narrower than tall: black on the sides
    y0, y1, x0, x1 = _bbox(pic)
    assert y0 == 0 and y1 == 31, "the object's larger side should fill the frame (fill=1.0)"
    assert 12 <= x1 - x0 + 1 <= 20  # 220 / 410 of 32 = 17 pixels wide
    assert abs(float(np.median(pic[pic > 0.5])) - P.FLAT_GREY) < 0.02
    assert "masked the white background" in report
    crop = int(report.split("cropped 812x604 -> ")[1].split("x")[0])
    assert 406 <= crop <= 414  # the chair is 410 pixels tall (the mask is found on a copy 512 pixels wide)
    assert "resized to 32x32" in report and "filled 1 small hole" in report
    # the object covers about 6 % of the photo
    share = int(report.split("object: ")[1].split("%")[0])
    assert 4 <= share <= 8


def test_the_margin_and_grey_levels_follow_the_reference_pictures():
    views = np.zeros((3, 32, 32), np.uint8)
    views[:, 6:26, 10:22] = 200  # the object's larger side is 20 of 32 pixels
    ref = P.reference(views)
    assert ref["fill"] == pytest.approx(20 / 32)
    views2 = np.concatenate([views, np.zeros((2, 32, 32), np.uint8)])
    views2[3:, 12:20, 10:22] = 200  # a second class: its pictures span 12 of 32 pixels
    by = P.reference(views2, np.array([0, 0, 0, 1, 1]))["fill_by_class"]
    assert by == {0: pytest.approx(20 / 32), 1: pytest.approx(12 / 32)}
    pic, report = P.prepare_photo(Image.fromarray(_chair_photo()), 32, ref["fill"], ref["grey"])
    y0, y1, _, _ = _bbox(pic)
    assert abs((y1 - y0 + 1) - 20) <= 1 and abs(y0 - 6) <= 1
    assert abs(float(np.median(pic[pic > 0.5])) - 200 / 255) < 0.02
    matched, report2 = P.prepare_photo(Image.fromarray(_chair_photo()), 32, ref["fill"], ref["grey"], "matched")
    assert "matched" in report2 and abs(float(np.median(matched[matched > 0.5])) - 200 / 255) < 0.03


def test_a_transparent_png_uses_its_alpha_as_the_mask(tmp_path):
    a = np.zeros((300, 400, 4), np.uint8)
    a[..., :3] = 255  # white but transparent: not the object
    a[50:250, 150:250] = (200, 40, 40, 255)
    Image.fromarray(a, "RGBA").save(tmp_path / "cut.png")
    pic, report = P.load_photo(tmp_path / "cut.png", 32, fill=1.0)
    assert "transparency as the mask" in report and "cropped 400x300 -> 200x200" in report, report
    y0, y1, x0, x1 = _bbox(pic)
    assert (y0, y1) == (0, 31) and abs((x1 - x0 + 1) - 16) <= 1


def test_a_blank_picture_and_a_noisy_one_are_refused_in_one_line(tmp_path):
    Image.new("RGB", (300, 200), (250, 250, 250)).save(tmp_path / "blank.png")
    with pytest.raises(UserError) as exc:
        P.load_photo(tmp_path / "blank.png")
    msg = str(exc.value)
    assert msg.startswith("blank.png: no object found") and "\n" not in msg and "plain background" in msg
    Image.fromarray(RNG.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    with pytest.raises(UserError) as exc:
        P.load_photo(tmp_path / "noise.png")
    assert str(exc.value).startswith("noise.png: the background is not plain") and "photograph" in str(exc.value)
    # an object cut by the edges all round: the border is not one colour
    a = np.full((200, 300, 3), 250, np.uint8)
    a[:, :160] = 20
    with pytest.raises(UserError, match="border is not one plain colour"):
        P.prepare_photo(Image.fromarray(a))
    a = np.zeros((200, 300, 4), np.uint8)  # transparent everywhere
    with pytest.raises(UserError, match="transparent everywhere"):
        P.prepare_photo(Image.fromarray(a, "RGBA"))


def test_any_image_mode_and_the_exif_rotation(tmp_path):
    base, _ = P.prepare_photo(Image.fromarray(_chair_photo(noise=0)), 32, fill=1.0)
    grey = np.asarray(Image.fromarray(_chair_photo(noise=0)).convert("L"), np.uint16) * 257
    Image.fromarray(grey).save(tmp_path / "g16.png")  # 16-bit grey
    Image.fromarray(_chair_photo(noise=0)).convert("P", palette=Image.ADAPTIVE).save(tmp_path / "pal.png")
    for f in ("g16.png", "pal.png"):
        pic, _ = P.load_photo(tmp_path / f, 32, fill=1.0)
        assert np.abs(pic - base).mean() < 0.02, f
    # a JPEG stored on its side with an EXIF orientation tag (6: turn 90 degrees clockwise to view)
    sideways = Image.fromarray(_chair_photo(noise=0)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "side.jpg", exif=exif, quality=95)
    pic, report = P.load_photo(tmp_path / "side.jpg", 32, fill=1.0)
    assert "turned upright (EXIF orientation 6)" in report
    assert np.abs(pic - base).mean() < 0.03


def test_a_rendered_picture_is_used_as_it_is():
    img = np.zeros((32, 32), np.uint8)
    img[4:28, 8:20] = 180
    pic, report = P.prepare_photo(Image.fromarray(img), 32)
    assert "used as it is" in report and np.allclose(pic, img / 255.0)


def test_the_photo_module_is_headless():
    code = (
        "import sys, explorer.papers.shapes3d.photo; assert 'PySide6' not in sys.modules and 'vtk' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
