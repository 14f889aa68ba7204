import cv2
import numpy as np
import pytest

from facesr.metrics import flicker, hf_energy_ratio, landmark_error, psnr, ssim


def test_ssim_matches_scikit_image(astronaut):
    metrics = pytest.importorskip("skimage.metrics")
    from facesr.metrics import luma

    blurred = cv2.GaussianBlur(astronaut, (0, 0), 2)
    ours = ssim(astronaut, blurred)
    theirs = metrics.structural_similarity(luma(astronaut), luma(blurred), data_range=255, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False)
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert ssim(astronaut, astronaut) == pytest.approx(1.0)


def test_hf_ratio_separates_bicubic_from_the_original(astronaut):
    hr = astronaut[:256, 128:384]
    lr = cv2.resize(hr, (64, 64), interpolation=cv2.INTER_AREA)
    bic = cv2.resize(lr, (256, 256), interpolation=cv2.INTER_CUBIC)
    assert hf_energy_ratio([hr], [hr], 4) == pytest.approx(1.0)
    assert hf_energy_ratio([bic], [hr], 4) < 0.2  # bicubic cannot hold detail above the LR Nyquist
    sharpened = np.clip(hr * 2.0 - cv2.GaussianBlur(hr, (0, 0), 1.0), 0, 255).astype(np.uint8)
    assert hf_energy_ratio([sharpened], [hr], 4) > 1.3  # over-sharpening shows above 1


def test_psnr_is_pinned_on_pairs_of_known_error(astronaut):
    a = astronaut[:64, :64]
    # every value off by 5: MSE 25, so 10 log10(255^2 / 25) dB
    off = np.where(a < 128, a + 5, a - 5).astype(np.uint8)
    assert psnr(off, a) == pytest.approx(10 * np.log10(255.0**2 / 25), abs=1e-9)  # 34.151 dB
    assert psnr(a, off) == psnr(off, a)
    # one value in four off by 16, the rest equal: MSE 64
    b = a.astype(np.int64)
    b[::2, ::2] = np.where(a[::2, ::2] < 128, a[::2, ::2] + 16, a[::2, ::2] - 16)
    assert psnr(b.astype(np.uint8), a) == pytest.approx(10 * np.log10(255.0**2 / 64), abs=1e-9)  # 30.069 dB
    assert psnr(a, a) == float("inf")


def test_flicker_measures_change_unlike_the_original(astronaut):
    a = astronaut[:128, :128]
    b = np.roll(a, 1, axis=1)  # the original moves by a pixel
    assert flicker(a, b, a, b) == 0.0  # the output moves exactly alike
    assert flicker(a, a, a, b) > 1.0  # the output stands still
    noisy = np.clip(b + np.random.default_rng(0).normal(0, 4, b.shape), 0, 255).astype(np.uint8)
    assert flicker(a, noisy, a, b) > 2.0  # the output shimmers


def test_landmark_error_is_in_inter_ocular_units():
    truth = np.array([[10.0, 10], [30, 10], [20, 20], [20, 30], [0, 12], [40, 12]])
    assert landmark_error(truth, truth) == 0.0
    assert landmark_error(truth + [2.0, 0.0], truth) == pytest.approx(0.1)
