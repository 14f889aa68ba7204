"""facesr: real-time face super-resolution for video calls.

    import facesr
    enhancer = facesr.Enhancer("lite", scale=4)     # detector, tracker and generator for one stream
    big = enhancer(frame)                           # (H, W, 3) uint8 RGB -> (4H, 4W, 3)

    net = facesr.load_generator("lite", scale=4)    # the generator alone (a torch.nn.Module)
    sr = facesr.SuperResolver(net)                  # uint8 crops in, uint8 crops out, batched
"""

from importlib import import_module

__version__ = "0.1.0"

# The public API, imported on first use so `facesr --help` and error messages need no torch.
_API = {
    "Discriminator": "models",
    "Enhancer": "enhancer",
    "FaceDetector": "detect",
    "FaceTracker": "detect",
    "Generator": "models",
    "GeneratorConfig": "models",
    "SuperResolver": "superres",
    "UserError": "errors",
    "load_generator": "weights",
    "upscale_tiled": "superres",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'facesr' has no attribute {name!r}")
