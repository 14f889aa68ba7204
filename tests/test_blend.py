import numpy as np
import pytest
import torch

from facesr.blend import Crop, Held, face_crop, feather_mask, hold_small_changes, match_low_frequencies, paste
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


def test_paste_has_no_seam_and_respects_alpha():
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)
    crop = Crop(20, 20, 60, 60, (False,) * 4)
    same = bg.copy()
    paste(same, bg[80:240, 80:240].copy(), crop, 4)  # pasting the background onto itself changes nothing
    assert np.array_equal(same, bg)
    out = bg.copy()
    paste(out, np.full((160, 160, 3), 200, np.uint8), crop, 4)
    assert np.all(out[150:170, 150:170] == 200)  # the middle is the SR crop
    assert np.array_equal(out[80, 80:240], bg[80, 80:240])  # the border row is still the background
    half = bg.copy()
    paste(half, np.full((160, 160, 3), 200, np.uint8), crop, 4, alpha=0.5)
    expected = (bg[160, 160].astype(float) + 200) / 2
    assert np.allclose(half[160, 160], expected, atol=1)


def test_low_frequency_match_removes_colour_drift_but_keeps_detail():
    rng = np.random.default_rng(1)
    lr = rng.integers(60, 190, (32, 32, 3), dtype=np.uint8)
    sr = np.kron(lr, np.ones((4, 4, 1), np.uint8)).astype(np.int16)
    detail = rng.integers(-20, 20, sr.shape)
    drifted = np.clip(sr + detail + [25, -15, 10], 0, 255).astype(np.uint8)
    fixed = match_low_frequencies(drifted, lr, 4).astype(float)
    assert np.abs(fixed.mean(axis=(0, 1)) - lr.mean(axis=(0, 1))).max() < 1.5
    assert np.abs(drifted.astype(float).mean(axis=(0, 1)) - lr.mean(axis=(0, 1))).max() > 9
    kept = np.corrcoef((fixed - sr).ravel(), detail.ravel())[0, 1]
    assert kept > 0.9  # the high-frequency detail survives


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
