"""The enhanced stream as a virtual camera (pyvirtualcam: v4l2loopback on Linux), for Zoom, Meet or OBS."""

from __future__ import annotations

import threading

from ..errors import UserError
from .slot import SlotClosed


def open_virtual_camera(width: int, height: int, fps: float, device: str | None = None, backend: str | None = None):
    """A pyvirtualcam.Camera, or a one-line UserError saying why there is none."""
    try:
        import pyvirtualcam
    except ImportError:  # pragma: no cover - a dependency of facesr
        raise UserError("--virtual-camera: pyvirtualcam is not installed (pip install pyvirtualcam)") from None
    try:
        return pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device or None,
                                   backend=backend)
    except (RuntimeError, ValueError, OSError) as exc:
        reason = " ".join(str(exc).split())
        hint = ""
        if "v4l2" in reason.lower() or "loopback" in reason.lower():
            hint = " (Linux needs the v4l2loopback kernel module: sudo modprobe v4l2loopback exclusive_caps=1)"
        raise UserError(f"--virtual-camera: no virtual camera: {reason}{hint}") from None


class VirtualCameraSink:
    """Sends each new enhanced frame of a LocalSource to a virtual camera, from its own thread."""

    def __init__(self, source, device: str | None = None, backend: str | None = None) -> None:
        width, height = source.out_size
        self.source = source
        self.camera = open_virtual_camera(width, height, source.fps, device, backend)
        self.frames_sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="facesr-virtual-camera", daemon=True)

    @property
    def device(self) -> str:
        return self.camera.device

    def start(self) -> VirtualCameraSink:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.camera.close()

    def _run(self) -> None:
        last = 0
        try:
            while not self._stop.is_set():
                taken = self.source.output.get(last, timeout=0.5)
                if taken is None:
                    continue
                last = taken.seq
                self.camera.send(taken.item.enhanced)
                self.frames_sent += 1
        except SlotClosed:
            pass
