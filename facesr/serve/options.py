"""What a `facesr serve` run is: every option with its default, in one place (light to import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"  # others get a warning
    port: int = 8080  # 0: any free port
    model: str | None = None  # the page's default model; None: the device's default (runtime.model_name)
    max_upload_mb: float = 50.0  # larger uploads get 413 before their body is read
    jobs: int = 1  # jobs run at once, each in a worker thread; the rest wait in order
    max_queue: int = 16  # jobs waiting or running (and uploads arriving) at once; more get 503
    max_video_seconds: float = 120.0  # longer videos are refused
    max_image_pixels: int = 4_200_000  # photos larger than this (2048x2048) are refused: the x4 result gets huge
    max_video_pixels: int = 1280 * 720  # video frames larger than this are refused
    keep_seconds: float = 3600.0  # uploads and results are deleted this long after their job finished
    device: str = "auto"
    precision: str = "auto"
    scale: int = 4
    tile: int = 192  # whole-image mode: tile side in input pixels (as `facesr image --full-frame`)
    workdir: str | None = None  # where uploads and results live (a fresh folder in it); None: the system's temp

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
