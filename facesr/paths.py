"""Where facesr finds things on disk: the team's data, its cache and the generator weights.

    FACESR_DATA     the data folder (faces/train, faces/eval, videos, ...); else ../shared/data
                    beside a source checkout
    FACESR_CACHE    made files (detector models, call clips, training banks); else ~/.cache/facesr
    FACESR_WEIGHTS  generator weights; else weights/ of a checkout, else <prefix>/share/facesr/weights
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UserError

_CHECKOUT = Path(__file__).resolve().parent.parent  # the source checkout, when facesr runs from one


def cache_dir() -> Path:
    return Path(os.environ.get("FACESR_CACHE") or Path.home() / ".cache" / "facesr")


def weights_dir() -> Path:
    if os.environ.get("FACESR_WEIGHTS"):
        return Path(os.environ["FACESR_WEIGHTS"])
    checkout = _CHECKOUT / "weights"
    installed = Path(sys.prefix) / "share" / "facesr" / "weights"
    return checkout if checkout.is_dir() or not installed.is_dir() else installed


def data_dir(sub: str = "") -> Path:
    """$FACESR_DATA/SUB, else ../shared/data/SUB beside a source checkout; a UserError naming both
    where neither holds it."""
    env = os.environ.get("FACESR_DATA")
    checkout = _CHECKOUT.parent / "shared" / "data"
    for root in ([Path(env)] if env else []) + [checkout]:
        if (root / sub).exists():
            return root / sub
    where = f"$FACESR_DATA/{sub} ({Path(env) / sub})" if env else "$FACESR_DATA (not set)"
    raise UserError(f"no data: neither {where} nor {checkout / sub} exists; set FACESR_DATA to the data folder")


def shipped_scales() -> tuple[int, ...]:
    """The scales shipped weights exist for, from their names `{model}-x{scale}.safetensors`
    (what `--scale` offers)."""
    found = {int(scale) for p in weights_dir().glob("*-x*.safetensors") if (scale := p.stem.rsplit("-x", 1)[-1]).isdigit()}
    return tuple(sorted(found)) or (4,)
