"""The int8 CPU path: building an int8 twin from safetensors, running it, and never running a stale one."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from facesr import cli
from facesr.errors import UserError
from facesr.int8 import SOURCE_KEY, Int8Network, int8_path, int8_status, onnx_metadata
from facesr.metrics import psnr
from facesr.models import Generator, generator_config
from facesr.paths import weights_dir
from facesr.runtime import plan
from facesr.superres import SuperResolver
from facesr.weights import file_sha256, load_generator, save_generator
from helpers import ASTRONAUT_FACE, GRACE_HOPPER_FACE, downscale

WEIGHTS_DIR = weights_dir()

CPU = torch.device("cpu")


def face_lr(photo: np.ndarray, box, pad: int = 40) -> np.ndarray:
    x0, y0, x1, y1 = box
    return downscale(np.ascontiguousarray(photo[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]), 4)


@pytest.mark.parametrize("path", sorted(WEIGHTS_DIR.glob("*.int8.onnx")), ids=lambda p: p.name)
def test_every_shipped_int8_model_was_built_from_the_shipped_weights(path):
    source = WEIGHTS_DIR / path.name.replace(".int8.onnx", ".safetensors")
    assert source.is_file(), f"{path.name} has no safetensors beside it"
    assert onnx_metadata(path)[SOURCE_KEY] == file_sha256(source), (
        f"{path.name} is stale: run `facesr quantize --model {source.stem.split('-x')[0]}`")


def test_auto_takes_int8_on_cpus_that_prefer_it_where_the_model_has_it(monkeypatch):
    import facesr.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_prefers_int8", lambda: True)
    assert SuperResolver(load_generator("lite", 4), "cpu", "auto").precision == "int8"
    assert SuperResolver(load_generator("lite-gan", 4), "cpu", "auto").precision != "int8"  # it has no int8 twin
    assert SuperResolver(load_generator("lite-gan@0.5", 4), "cpu", "auto").precision != "int8"
    monkeypatch.setattr(runtime, "cpu_prefers_int8", lambda: False)  # AMX, or not x86
    assert SuperResolver(load_generator("lite", 4), "cpu", "auto").precision != "int8"


def test_lite_ships_int8_and_it_runs(astronaut):
    lite = load_generator("lite", 4)
    assert int8_status(lite)[0] == int8_path(WEIGHTS_DIR / "lite-x4.safetensors")
    resolver = SuperResolver(load_generator("lite", 4), "cpu", "int8")
    assert resolver.precision == plan(lite, CPU, "int8").precision == "int8"
    crop = face_lr(astronaut, ASTRONAUT_FACE)
    got = resolver([crop])[0]
    want = SuperResolver(load_generator("lite", 4), "cpu", "float32")([crop])[0]
    assert got.dtype == np.uint8 and got.shape == want.shape == (crop.shape[0] * 4, crop.shape[1] * 4, 3)
    # int8 touches the residual only; the bicubic skip stays float32. Its 7-bit weights keep
    # AVX2's 16-bit sums from saturating (8-bit weights gave 38.9 dB on an AVX2-only Zen 3)
    assert 40 < psnr(got, want) < 70
    import onnx

    ops = [node.op_type for node in onnx.load(int8_path(WEIGHTS_DIR / "lite-x4.safetensors")).graph.node]
    assert "PRelu" not in ops and ops[-2:] == ["DepthToSpace", "DequantizeLinear"]  # int8.py's two rewrites
    residual = resolver.residuals([crop])[0]  # what the Enhancer pastes over the frame's bicubic upscale
    bicubic = cv2.resize(crop.astype(np.float32), got.shape[1::-1], interpolation=cv2.INTER_CUBIC)
    assert np.abs(np.clip(bicubic + residual, 0, 255) - got).max() <= 0.51


@pytest.fixture(scope="module")
def built(tmp_path_factory, astronaut, grace_hopper):
    """A random `lite` saved as safetensors, and its int8 twin built by `facesr quantize`."""
    tmp = tmp_path_factory.mktemp("int8")
    faces = tmp / "faces"
    faces.mkdir()
    for i, (photo, box) in enumerate([(astronaut, ASTRONAUT_FACE), (grace_hopper, GRACE_HOPPER_FACE)]):
        x0, y0, x1, y1 = box
        face = cv2.resize(np.ascontiguousarray(photo[y0:y1, x0:x1]), (128, 128), interpolation=cv2.INTER_AREA)
        for flip in (False, True):
            cv2.imwrite(str(faces / f"{i}{flip:d}.png"), (face[:, ::-1] if flip else face)[..., ::-1])
    torch.manual_seed(0)
    net = Generator(generator_config("lite", 4)).eval()
    with torch.no_grad():  # a residual big enough that int8 errors in it would show
        net.tail[0].weight.mul_(10)
    weights = tmp / "mine-x4.safetensors"
    save_generator(weights, net)
    assert cli.main(["quantize", "--model", str(weights), "--faces", str(faces), "--count", "4"]) == 0
    return weights, net, faces


def test_quantize_builds_an_int8_twin_that_computes_the_network(built, astronaut):
    weights, net, _ = built
    assert int8_path(weights).is_file()
    int8 = Int8Network(int8_path(weights))
    x = np.stack([face_lr(astronaut, ASTRONAUT_FACE)[:27, :31]] * 2).transpose(0, 3, 1, 2).astype(np.float32) / 255
    x[1] = x[1, :, ::-1]  # batch of two different crops, odd sizes: the shapes are dynamic
    got = int8(x)
    with torch.inference_mode():
        want = net.network(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (2, 3, 27 * 4, 31 * 4)
    err = np.abs(got - want).mean() / np.abs(want).mean()
    assert err < 0.1, f"int8 residual off by {err:.1%} of its size"


def test_stale_int8_is_never_run(built, tmp_path):
    weights, net, _ = built
    copy = tmp_path / "mine-x4.safetensors"
    shutil.copy(int8_path(weights), int8_path(copy))
    with torch.no_grad():
        net.head[0].bias.add_(0.01)
    save_generator(copy, net)  # retrained since the int8 model was built
    stale = load_generator(str(copy), 4)
    path, why = int8_status(stale)
    assert path is None and "rebuild" in why
    with pytest.raises(UserError, match="--precision int8: .*rebuild"):
        SuperResolver(stale, "cpu", "int8")


def test_int8_is_asked_for_where_it_cannot_run(built):
    weights, net, _ = built
    fresh = Generator(net.config)  # not loaded from a file: nothing to look beside
    with pytest.raises(UserError, match="not loaded from a weights file"):
        SuperResolver(fresh, "cpu", "int8")
    with pytest.raises(UserError, match="does not exist .*facesr quantize"):
        SuperResolver(load_generator("srresnet", 4), "cpu", "int8")  # none shipped: slower than bfloat16
    with pytest.raises(UserError, match="on CUDA use float16"):
        plan(load_generator(str(weights), 4), torch.device("cuda"), "int8")


def test_quantize_bad_input_is_one_line(built, tmp_path, capsys):
    weights, _, _ = built
    assert cli.main(["quantize", "--model", str(weights), "--faces", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("facesr: error:") and "no face images" in err and "\n" not in err
