import cv2
import numpy as np
import pytest
import torch

from facesr.blend import Crop, Held, face_crop, feather_mask, hold_small_changes, paste_residual
from facesr.models import Generator, generator_config
from facesr.superres import SuperResolver, upscale_tiled


def test_face_crop_adds_margin_and_clips_to_the_frame():
    crop = face_crop(np.array([100, 50, 140, 90]), (180, 320, 3), margin=0.25)
    assert (crop.x0, crop.y0, crop.x1, crop.y1) == (90, 40, 150, 100)
    assert crop.at_edge == (False, False, False, False)
    corner = face_crop(np.array([-10, 150, 30, 190]), (180, 320, 3), margin=0.25)
    assert (corner.x0, corner.y1) == (0, 180) and corner.at_edge == (True, False, False, True)
    assert face_crop(np.array([400, 10, 440, 50]), (180, 320, 3)) is None  # wholly outside


def test_feather_mask_fades_to_zero_at_inner_edges_only():
    m = feather_mask(40, 60, 8, (False, False, True, False))[..., 0]
    assert m.shape == (40, 60)
    assert m[20, 30] == 1.0
    assert m[0, 30] < 0.05 and m[39, 30] < 0.05 and m[20, 0] < 0.05
    assert m[20, 59] == 1.0  # the frame's own edge: no fade
    assert np.all(np.diff(m[20, :20]) >= 0)


def _frame_and_crop(seed: int = 0):
    """A smooth LR frame, its bicubic upscale and a face crop in the middle."""
    rng = np.random.default_rng(seed)
    lr_frame = cv2.GaussianBlur(rng.integers(40, 215, (90, 100, 3), dtype=np.uint8), (0, 0), 2)
    up = cv2.resize(lr_frame, (400, 360), interpolation=cv2.INTER_CUBIC)
    crop = Crop(30, 25, 70, 65, (False,) * 4)
    return rng, up, crop, np.ascontiguousarray(crop.of(lr_frame))


def _reference(up, residual, lr, crop, feather=0.18, alpha=1.0):
    """The face as an image (the crop's bicubic upscale plus the residual), its low-frequency drift
    from the LR crop taken off, then blended in through the mask: float64 numpy throughout."""
    ys, xs = crop.scaled(4)
    bic = up[ys, xs].astype(np.float64)
    face = bic + residual
    h, w = lr.shape[:2]
    down = face.reshape(h, 4, w, 4, 3).mean(axis=(1, 3))
    drift = cv2.GaussianBlur(down - lr, (0, 0), 1.0)
    face -= cv2.resize(drift, (4 * w, 4 * h), interpolation=cv2.INTER_CUBIC)
    m = feather_mask(4 * h, 4 * w, max(2, round(4 * min(h, w) * feather)), crop.at_edge).astype(np.float64) * alpha
    out = up.astype(np.float64).copy()
    out[ys, xs] = bic + m * (face - bic)
    return out


def test_paste_residual_is_the_drift_matched_face_blended_in():
    rng, up, crop, lr = _frame_and_crop()
    residual = rng.normal(0, 12, (160, 160, 3)).astype(np.float32)
    for alpha in (1.0, 0.5):
        out = up.copy()
        paste_residual(out, residual, lr, crop, 4, alpha=alpha)
        assert np.abs(out - np.clip(_reference(up, residual, lr, crop, alpha=alpha), 0, 255)).max() <= 1.0
    assert np.abs(out.astype(int) - up).max() > 10  # it did paste something


def test_paste_residual_has_no_seam_and_takes_off_colour_drift_but_keeps_detail():
    rng, up, crop, lr = _frame_and_crop(1)
    same = up.copy()
    paste_residual(same, np.zeros((160, 160, 3), np.float32), lr, crop, 4)
    assert np.abs(same.astype(int) - up).max() <= 1  # nothing added: the bicubic frame, to within rounding
    detail = rng.normal(0, 10, (160, 160, 3)).astype(np.float32)
    out = up.copy()
    paste_residual(out, detail + np.float32([25, -15, 10]), lr, crop, 4)  # detail on a colour cast
    ys, xs = crop.scaled(4)
    added = out[ys, xs].astype(float) - up[ys, xs]
    assert np.abs(added.mean(axis=(0, 1))).max() < 1.5  # the cast is gone
    middle = (slice(50, 110), slice(50, 110))
    assert np.corrcoef(added[middle].ravel(), detail[middle].ravel())[0, 1] > 0.9  # the detail is kept
    border = np.zeros(out.shape[:2], bool)
    border[ys, xs] = True
    edge_rows = np.r_[ys.start, ys.stop - 1]
    assert np.abs(out[edge_rows, xs].astype(int) - up[edge_rows, xs]).max() <= 1  # the crop's edge: background
    assert np.array_equal(out[~border], up[~border])  # nothing outside the crop moves


def test_a_face_pasted_over_another_replaces_it():
    rng, up, crop, lr = _frame_and_crop(2)
    residual = rng.normal(0, 12, (160, 160, 3)).astype(np.float32)
    first = Crop(10, 10, 45, 45, (False,) * 4)
    out = up.copy()
    paste_residual(out, rng.normal(0, 30, (140, 140, 3)).astype(np.float32), np.ascontiguousarray(first.of(
        cv2.resize(up, (100, 90), interpolation=cv2.INTER_AREA))), first, 4)
    paste_residual(out, residual, lr, crop, 4, bicubic=up)
    alone = up.copy()
    paste_residual(alone, residual, lr, crop, 4)
    ys, xs = crop.scaled(4)
    middle = (slice(ys.start + 40, ys.stop - 40), slice(xs.start + 40, xs.stop - 40))  # where the mask is 1
    assert np.array_equal(out[middle], alone[middle])


def test_tiled_full_frame_matches_one_pass_without_seams():
    torch.manual_seed(0)
    net = Generator(generator_config("lite", 4))
    resolver = SuperResolver(net)
    rng = np.random.default_rng(2)
    img = np.clip(rng.normal(128, 40, (150, 170, 3)), 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(np.repeat(np.repeat(img[::5, ::5], 5, 0), 5, 1)[:150, :170])
    whole = resolver([img])[0].astype(float)
    tiled = upscale_tiled(img, resolver, tile=64, overlap=8).astype(float)
    assert tiled.shape == whole.shape == (600, 680, 3)
    mse = np.mean((whole - tiled) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 40


@pytest.mark.parametrize("sizes", [[(30, 30)], [(30, 40), (52, 44), (8, 9)]])
def test_super_resolver_batches_crops_of_different_sizes(sizes):
    net = Generator(generator_config("lite", 2))
    resolver = SuperResolver(net)
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    outs = resolver(crops)
    assert [o.shape for o in outs] == [(2 * h, 2 * w, 3) for h, w in sizes]
    alone = [resolver([c])[0] for c in crops]
    # the batch padding (bottom/right) reaches into a crop only as far as the receptive field
    reach = 2 * 16
    for a, b in zip(alone, outs):
        inner_a, inner_b = a[:-reach, :-reach].astype(int), b[:-reach, :-reach].astype(int)
        assert inner_a.size == 0 or np.abs(inner_a - inner_b).max() <= 1


def test_hold_keeps_one_level_changes_inside_both_frames_faces_and_passes_the_rest():
    rng = np.random.default_rng(0)
    last = rng.integers(10, 240, (40, 60, 3), dtype=np.uint8)
    step = rng.choice(np.array([-3, -2, -1, 0, 1, 2, 3], np.int16), size=last.shape)
    new = (last.astype(np.int16) + step).astype(np.uint8)
    out = new.copy()
    held = [Held.of(last, (slice(0, 30), slice(0, 40)))]  # last frame's face
    hold_small_changes(out, [(slice(10, 40), slice(20, 60))], held, levels=2)  # this frame's face
    both = (slice(10, 30), slice(20, 40))
    small = np.abs(step[both]) < 2
    assert np.array_equal(out[both][small], last[both][small])  # changes of 0 or 1 level held
    assert np.array_equal(out[both][~small], new[both][~small])  # 2 or more pass
    outside = np.ones(last.shape[:2], bool)
    outside[both] = False
    assert np.array_equal(out[outside], new[outside])  # only where a face was pasted in both frames
    assert np.abs(out.astype(np.int16) - new).max() <= 1
