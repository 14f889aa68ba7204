"""`facesr serve`'s page in a real browser: headless Debian Chromium, in the private network namespace.

Upload the astronaut photo, wait for the job, check the compare view's two halves are the same
size, and that the download is byte for byte what the API returns. Screenshots go to
out/test-artifacts/serve_*.png.
"""

from __future__ import annotations

import time
import urllib.request

import cv2
import pytest

from helpers import ARTIFACTS, chromium, facesr_server, wait_for


@pytest.fixture()
def server():
    """`facesr serve` as users run it, on a free port."""
    with facesr_server("serve") as url:
        yield url


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.browser
def test_page_upload_compare_download(private_network, browser_tools, server, astronaut, tmp_path):
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut[..., ::-1])
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = chromium(photo, tmp_path / "profile")  # (the fake camera flag is unused here)
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        driver.get(server)
        wait_for(driver, "return document.getElementById('model').options.length > 0", 15, "the config")
        driver.save_screenshot(str(ARTIFACTS / "serve_empty.png"))
        driver.find_element("id", "file").send_keys(str(photo))
        job_id = wait_for(driver, "return document.body.dataset.compareReady", 90, "the compare view")
        sizes = driver.execute_script("""
            const b = document.getElementById('before'), a = document.getElementById('after');
            const rb = b.getBoundingClientRect(), ra = a.getBoundingClientRect();
            return [b.naturalWidth, b.naturalHeight, a.naturalWidth, a.naturalHeight, rb.width, rb.height, ra.width, ra.height];
        """)
        assert sizes[:4] == [2048, 2048, 2048, 2048], sizes
        assert sizes[4:6] == sizes[6:8] and sizes[4] > 500, sizes
        # the divider: dragged to a quarter, facesr shows on the right three quarters
        driver.execute_script("const s = document.getElementById('split'); s.value = 25; s.dispatchEvent(new Event('input'));")
        assert driver.execute_script("return document.getElementById('after').style.clipPath") == "inset(0px 0px 0px 25%)"
        zoom = driver.execute_script("""
            const c = document.getElementById('zoom-after').getContext('2d');
            return Array.from(c.getImageData(150, 150, 1, 1).data);""")
        assert zoom[3] == 255 and sum(zoom[:3]) > 0  # a face was drawn in the zoom
        status = driver.find_element("id", "status").text
        assert status == "Done", status
        driver.save_screenshot(str(ARTIFACTS / "serve_compare.png"))

        driver.find_element("id", "download").click()
        target = downloads / "astronaut_facesr_x4.png"
        deadline = time.monotonic() + 30
        while not target.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert target.is_file(), list(downloads.iterdir())
        with urllib.request.urlopen(f"{server}api/jobs/{job_id}/result", timeout=10) as r:
            assert target.read_bytes() == r.read()
    finally:
        driver.quit()
