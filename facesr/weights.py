"""Where model files come from: generator weights in weights/, BlazeFace detector models from the registry.

Generator files are safetensors with their `GeneratorConfig` and provenance in the header
metadata, named `{variant}-x{scale}.safetensors`. The detector models are never committed:
they are extracted from the official `mediapipe==0.10.21` wheel on PyPI, verified by sha256
and cached under ~/.cache/facesr (or $FACESR_CACHE); `$FACESR_DETECTOR_DIR` or
`--detector-model` points at files a user already has.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import UserError
from .models import MODELS, PIXEL_MODEL, Generator, GeneratorConfig
from .paths import cache_dir, weights_dir

# --- generator weights -----------------------------------------------------------------


def weights_path(variant: str, scale: int) -> Path:
    return weights_dir() / f"{variant}-x{scale}.safetensors"


def save_generator(path: str | os.PathLike, model: Generator, **metadata: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "facesr-generator", "config": json.dumps(model.config.to_dict())}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.part")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


# How far `NAME@STRENGTH` may push a GAN model past its fine-tune (see gan_strength below).
MAX_GAN_STRENGTH = 1.5


def parse_gan_strength(model: str) -> tuple[str, float | None]:
    """"srgan@0.5" -> ("srgan", 0.5); any other name or path -> (it, None)."""
    name, sep, value = model.rpartition("@")
    if not sep or name not in PIXEL_MODEL:
        return model, None
    try:
        strength = float(value)
    except ValueError:
        raise UserError(f"--model {model}: the GAN strength after @ must be a number, e.g. {name}@0.5") from None
    if not 0.0 <= strength <= MAX_GAN_STRENGTH:
        raise UserError(f"--model {model}: the GAN strength must be between 0 ({PIXEL_MODEL[name]}) "
                        f"and {MAX_GAN_STRENGTH:g} (1 is {name} as trained)")
    return name, strength


def is_model_name(model: str) -> bool:
    """A shipped variant, bare ("srgan") or with a GAN strength ("srgan@0.5")."""
    return parse_gan_strength(model)[0] in MODELS


def gan_strength(gan: Generator, pixel: Generator, strength: float) -> Generator:
    """The network interpolation of ESRGAN (Wang et al. 2018): every weight `pixel + strength x (gan - pixel)`.

    The GAN model was fine-tuned from the pixel model or an earlier version of it, so the two
    sit in one basin and their blend trades smoothly between the pixel model's fidelity (0) and the GAN
    model's restored texture (1); a little past 1 adds texture at more PSNR cost. Batch-norm
    running statistics blend the same way; integer buffers (step counts) are the GAN model's.
    """
    if gan.config != pixel.config:
        raise ValueError("the two generators differ in architecture")
    pixel_state = pixel.state_dict()
    blended = {k: torch.lerp(pixel_state[k], v, strength) if v.is_floating_point() else v
               for k, v in gan.state_dict().items()}
    net = Generator(gan.config)
    net.load_state_dict(blended)
    return net.eval()


def load_generator(model: str, scale: int = 4) -> Generator:
    """A generator from a model name (its shipped weights) or a .safetensors path.

    `NAME@STRENGTH` for a GAN model ("srgan@0.5", "lite-gan@0.7") blends it with the pixel
    model it was fine-tuned from (`gan_strength`): 0 is the pixel model, 1 the GAN model.
    A .safetensors file brings its own scale; `scale` picks a named model's weights.
    """
    name, strength = parse_gan_strength(model)
    if strength is not None:
        if strength == 0.0:
            return load_generator(PIXEL_MODEL[name], scale)
        gan = load_generator(name, scale)
        if strength == 1.0:
            return gan
        return gan_strength(gan, load_generator(PIXEL_MODEL[name], scale), strength)
    path = Path(model)
    named = path.suffix != ".safetensors"
    if named:
        if model not in MODELS:
            raise UserError(f"--model {model}: choose {', '.join(MODELS)} (srgan@0.5: a GAN strength) or a .safetensors file")
        path = weights_path(model, scale)
        if not path.is_file():
            raise UserError(f"no weights for model {model!r} at x{scale} ({path} is missing)")
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        config = GeneratorConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, OSError, TypeError) as exc:
        raise UserError(f"{path}: not a facesr generator file ({exc})") from None
    if named and config.scale != scale:
        raise UserError(f"{path}: holds a x{config.scale} model, not x{scale}")
    net = Generator(config)
    net.load_state_dict(state)
    net.weights_file = path  # where an int8 twin is looked for (facesr/int8.py)
    return net.eval()


# --- BlazeFace detector models from the mediapipe 0.10.21 wheel ------------------------

MEDIAPIPE_WHEEL = "mediapipe==0.10.21"
DETECTOR_MODELS = {
    "short": (
        "face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    "full": (
        "face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    ),
}
_WHEEL_DIR = "mediapipe/modules/face_detection/"


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def detector_model_path(kind: str = "short", override: str | os.PathLike | None = None) -> Path:
    """Path of a verified BlazeFace model, fetching it from the registry on first use."""
    if kind not in DETECTOR_MODELS:
        raise UserError(f"unknown detector {kind!r}; choose short or full")
    name, sha = DETECTOR_MODELS[kind]
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise UserError(f"{path}: detector model not found")
        return path
    search = [Path(os.environ["FACESR_DETECTOR_DIR"])] if os.environ.get("FACESR_DETECTOR_DIR") else []
    search.append(cache_dir() / "detector")
    for folder in search:
        path = folder / name
        if path.is_file():
            if file_sha256(path) != sha:
                raise UserError(f"{path}: sha256 mismatch (expected {sha[:12]}...); delete it to fetch again")
            return path
    fetch_detector_models()
    return cache_dir() / "detector" / name


def fetch_detector_models() -> Path:
    """Download the mediapipe 0.10.21 wheel with pip, extract and verify both models, cache them."""
    dest = cache_dir() / "detector"
    if all((dest / name).is_file() and file_sha256(dest / name) == sha for name, sha in DETECTOR_MODELS.values()):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    print(f"facesr: fetching BlazeFace models from the {MEDIAPIPE_WHEEL} wheel on PyPI ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        base = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", "-d", tmp]
        attempts = [
            [MEDIAPIPE_WHEEL],
            # another Python than the wheels exist for: any one platform's wheel has the same models
            ["--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", MEDIAPIPE_WHEEL],
        ]
        errors = ""
        for extra in attempts:
            proc = subprocess.run(base + extra, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("mediapipe-*.whl"))
            if wheels:
                break
            errors = proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else ["pip found no wheel"]
        else:
            raise UserError(
                f"cannot obtain the BlazeFace models: `pip download {MEDIAPIPE_WHEEL}` failed ({errors[0]}); "
                "set FACESR_DETECTOR_DIR to a folder holding them"
            )
        with zipfile.ZipFile(wheels[0]) as zf:
            for name, sha in DETECTOR_MODELS.values():
                data = zf.read(_WHEEL_DIR + name)
                if hashlib.sha256(data).hexdigest() != sha:
                    raise UserError(f"{name} in {wheels[0].name}: sha256 mismatch, refusing to use it")
                part = dest / f".{name}.part"
                part.write_bytes(data)
                os.replace(part, dest / name)
    return dest
