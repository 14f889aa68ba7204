"""The page at / in a real browser: headless Debian Chromium, its fake camera playing a real call.

Chromium (apt: chromium, chromium-driver; `bash setup.sh test` installs them) is driven by
Selenium through /usr/bin/chromedriver. Everything runs in the suite's private network
namespace (conftest.private_network): the relay on 127.0.0.1, media over 10.213.0.1.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import av
import cv2
import pytest

from facesr.video import read_frames
from helpers import ARTIFACTS, chromium, facesr_server, shared_path, wait_for


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory) -> Path:
    """A real clip at call size (320x180) as .y4m, the file Chromium's fake camera plays in a loop."""
    path = tmp_path_factory.mktemp("camera") / "call_320x180.y4m"
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for rgb in read_frames(shared_path("data", "videos", "talking_s18.mp4"), 90):
            small = cv2.resize(rgb, (320, 180), interpolation=cv2.INTER_AREA)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(small, format="rgb24").reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture()
def relay():
    """`facesr stream --webrtc` as users run it, on a free port."""
    with facesr_server("stream", "--webrtc") as url:
        yield url


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.browser
@pytest.mark.shared_data
def test_browser_page_shows_the_enhanced_stream_at_4x(private_network, browser_tools, fake_camera, relay, tmp_path):
    driver = chromium(fake_camera, tmp_path / "profile")
    try:
        driver.get(relay)
        driver.find_element("id", "start").click()
        wait_for(driver, "const v = document.getElementById('remote'); return v.videoWidth === 1280 && "
                          "v.videoHeight === 720 && v.currentTime > 1", 60, "the enhanced video at 1280x720")
        wait_for(driver, "return document.getElementById('out-size').textContent === '1280x720'", 20,
                  "the relay's stats")
        time.sleep(2.0)  # a few seconds of stream for the stats window
        text = lambda i: driver.find_element("id", i).text  # noqa: E731
        stats = {i: text(i) for i in ("in-size", "out-size", "shown-size", "fps", "enhance-ms", "dropped", "mode")}
        print(stats)
        assert stats["in-size"] == "320x180" and stats["shown-size"] == "1280x720"
        assert stats["mode"].startswith("facesr on cpu")
        fps_in, fps_out, shown = stats["fps"].split(" / ")
        assert float(fps_out) > 0 and shown != "-" and float(shown) > 0  # frames flow; their speed is a benchmark's
        local = driver.execute_script("const v = document.getElementById('local'); return [v.videoWidth, v.videoHeight]")
        assert local == [320, 180]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "stream_browser.png"
        driver.save_screenshot(str(shot))
        shutil.copy(shot, tmp_path / shot.name)
        png = cv2.imread(str(shot))
        assert png is not None and png.shape[1] >= 1000

        driver.find_element("id", "bicubic").click()  # the compare switch
        wait_for(driver, "return document.getElementById('mode').textContent.startsWith('bicubic')", 10,
                  "the relay to switch to bicubic")
    finally:
        driver.quit()
