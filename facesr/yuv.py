"""RGB arrays to and from YUV video frames: the one place colour is converted.

Two conversions, each for its purpose:
* `rgb_to_frame` and `tag_bt709`: files facesr writes are BT.709 limited range, converted by
  swscale and tagged so, HD video's convention, so players show the colours meant.
* `rgb_to_i420` and `i420_to_rgb`: OpenCV's BT.601 pair, which round-trips without bias
  (swscale's rgb24 path shifts every frame by about 1.3 levels). WebRTC's frames, the
  training degradations' H.264 and the stream's sources use it.
"""

from __future__ import annotations

import av
import cv2
import numpy as np


def tag_bt709(stream) -> None:
    """Tag a video stream BT.709, limited range (HD video's convention), as `rgb_to_frame` converts.

    Players and decoders then turn the YUV back into the same colours instead of guessing.
    """
    cc = stream.codec_context
    cc.colorspace = cc.color_primaries = cc.color_trc = 1  # AVCOL_*_BT709
    cc.color_range = 1  # AVCOL_RANGE_MPEG


def rgb_to_frame(rgb: np.ndarray, pix_fmt: str = "yuv420p") -> av.VideoFrame:
    """An (H, W, 3) uint8 RGB array as a frame in `pix_fmt`, YUV formats by BT.709 limited range."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    if pix_fmt.startswith("yuv"):
        frame = frame.reformat(format=pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
    return frame


def rgb_to_i420(rgb: np.ndarray) -> av.VideoFrame:
    """An (H, W, 3) RGB array (even sides) as a yuv420p frame by OpenCV's BT.601 conversion.

    WebRTC's codecs and the training degradations use this pair: it round-trips without bias,
    where swscale's rgb24 path shifts every frame by about 1.3 levels.
    """
    return av.VideoFrame.from_ndarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420), format="yuv420p")


def i420_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB: OpenCV's inverse of `rgb_to_i420` for even-sided yuv420p."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)  # (3H/2, W) planes -> (H, W, 3)
    return frame.to_ndarray(format="rgb24")
