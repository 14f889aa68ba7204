"""Reading and writing still images as RGB uint8 arrays, with clear errors for bad files."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | os.PathLike) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_path(p))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grey and RGBA inputs are converted."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise UserError(f"{path}: not a readable image")
    return np.ascontiguousarray(img[..., ::-1])


def check_image_output(path: Path) -> None:
    if not is_image_path(path):
        raise UserError(f"{path}: unsupported image extension {path.suffix or '(none)'}; use one of {', '.join(IMAGE_SUFFIXES)}")


def write_rgb(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write atomically: encode to memory, then a temporary file renamed over the target."""
    path = Path(path)
    check_image_output(path)
    ok, buf = cv2.imencode(path.suffix.lower(), np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise UserError(f"{path}: could not encode image")
    tmp = path.with_name(f".{path.name}.part")
    try:
        buf.tofile(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
