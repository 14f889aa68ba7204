"""Reading and writing still images as RGB uint8 arrays, with clear errors for bad files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from .errors import IncompleteInput, UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | os.PathLike) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_path(p))


def read_rgb(path: str | os.PathLike, allow_incomplete: bool = False):
    """(H, W, 3) uint8 RGB; grey and RGBA inputs are converted.

    A JPEG or PNG cut off before its end is a UserError, or with `allow_incomplete` decoded as
    far as it goes (Pillow; the missing part is blank) and returned as (image, False); complete
    images come back as (image, True) then.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    complete = not is_cut_off(data.tobytes())
    if not complete and not allow_incomplete:
        raise UserError(f"{path}: the image is cut off before its end")
    img = _decode(data) if complete else _decode_cut_off(path)
    if img is None:
        raise UserError(f"{path}: not a readable image")
    return (img, complete) if allow_incomplete else img


def is_cut_off(data: bytes) -> bool:
    """Whether a JPEG or PNG ends before its end marker (other formats: never judged cut off)."""
    if data[:2] == b"\xff\xd8":  # JPEG: the end-of-image marker after the last start of scan
        return data.find(b"\xff\xd9", max(data.rfind(b"\xff\xda"), 0)) < 0
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data.rfind(b"IEND") < 0
    return False


def _decode(data: np.ndarray) -> np.ndarray | None:
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if img is None else np.ascontiguousarray(img[..., ::-1])


def _decode_cut_off(path: Path) -> np.ndarray | None:
    """What there is of a cut-off JPEG or PNG, the rest blank."""
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(path) as im:
            canvas = Image.new("RGB", im.size, (128, 128, 128))
            try:
                im.load()
            except OSError:
                pass  # what was decoded before the error stays in the image
            canvas.paste(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError):
        return None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    return np.asarray(canvas, dtype=np.uint8).copy()


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


def plan_jobs(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs for `facesr image SRC DST`: a file to a file, or a folder's images to
    PNGs of the same stems in a folder. Refuses what could not or must not be written, and any
    input that is not an image by its signature, before any work is done."""
    if not src.exists():
        raise UserError(f"{src}: no such file or directory")
    if _same_file(src, dst):
        raise UserError(f"{dst}: the output would overwrite the input")
    if src.is_dir():
        jobs = [(p, dst / f"{p.stem}.png") for p in list_images(src)]
        if not jobs:
            raise UserError(f"{src}: no images in this folder")
        if dst.exists() and not dst.is_dir():
            raise UserError(f"{dst}: a folder of images goes to a folder, and this is a file")
    else:
        check_image_output(dst)
        jobs = [(src, dst)]
    if not dst.parent.is_dir():
        raise UserError(f"{dst.parent}: no such directory")
    for path, _ in jobs:  # each is decoded when its turn comes
        if not cv2.haveImageReader(str(path)):
            raise UserError(f"{path}: not a readable image")
    return jobs


def enhance_files(jobs: list[tuple[Path, Path]], transform, still: bool = False) -> None:
    """Each input through `transform` ((H, W, 3) uint8 RGB -> larger) to its output, a line each on
    stderr. With `still`, `transform` is an Enhancer, reset before each image (each is a stream of
    its own). A cut-off JPEG or PNG is enhanced as far as it goes, and an `IncompleteInput` names
    it at the end."""
    cut_off = []
    for path, out in jobs:
        out.parent.mkdir(exist_ok=True)
        img, complete = read_rgb(path, allow_incomplete=True)
        if still:
            transform.reset()
        big = transform(img)
        write_rgb(out, big)
        if complete:
            print(f"{out}: {img.shape[1]}x{img.shape[0]} -> {big.shape[1]}x{big.shape[0]}", file=sys.stderr)
        else:
            cut_off.append(path)
    if cut_off:
        more = f" (and {len(cut_off) - 1} more)" if len(cut_off) > 1 else ""
        raise IncompleteInput(f"{cut_off[0]}{more}: cut off before its end; what was there is enhanced, "
                              "the missing part is blank in the output", 0, len(cut_off))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False
