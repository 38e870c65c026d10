"""``tfvtg serve`` in a real browser: headless Chromium driven by selenium,
against a real uvicorn server on a library of generated videos indexed with
the tiny BLIP-2.

Skipped (with the reason) only when Chromium, chromedriver or selenium are
absent; CI installs ``chromium`` and ``chromium-driver``. Set
TFVTG_SCREENSHOT=docs/screenshot.png to keep the result page's screenshot.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tfvtg.core.decomposition import Decomposition

pytest.importorskip("fastapi")
pytest.importorskip("av")
uvicorn = pytest.importorskip("uvicorn")
selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service as ChromeService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


CHROMIUM = _find("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _find("/usr/bin/chromedriver", "chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless browser tests need Chromium and chromedriver (Debian: apt-get install -y chromium chromium-driver)")

QUERY = "a person opens the door then sits down"


class TwoStepDecomposer:
    """Stands in for the LLM: every query is two sub-events in sequence."""

    def decompose(self, query: str) -> Decomposition:
        return Decomposition("sequentially", (query,), (("a person opens the door",), ("a person sits on a chair",)))


@pytest.fixture(scope="module")
def library_dir(tiny_blip2_dir, tmp_path_factory):
    from tfvtg import Library
    from tfvtg.testing import make_video

    root = tmp_path_factory.mktemp("serve-browser")
    videos = root / "videos"
    videos.mkdir()
    # H.264: what browsers play (the default MPEG-4 Part 2 is not)
    paths = [make_video(videos / f"{name}.mp4", n_frames=n, fps=10, size=(320, 180), codec="libx264")
             for name, n in (("kitchen", 90), ("hallway", 120), ("garden", 150))]
    lib = Library(root / "videos.tfvtg", encoder=tiny_blip2_dir)
    report = lib.add_many(paths, progress=False)
    lib.close()
    assert report.ok, report.failed
    return root / "videos.tfvtg"


@pytest.fixture(scope="module")
def server(library_dir):
    from tfvtg.app import create_app

    app = create_app(library_dir, decomposer=TwoStepDecomposer())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:  # up, and warmed (encoder loaded, kernels compiled)
        try:
            with urllib.request.urlopen(base + "/api/info", timeout=5) as r:
                import json

                if json.loads(r.read())["ready"]:
                    break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        pytest.fail("the server did not start within 120 s")
    yield base
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--window-size=1400,1000"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(options=options, service=ChromeService(CHROMEDRIVER))
    except WebDriverException as exc:
        pytest.skip(f"Chromium could not start headless: {exc.msg}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 20.0, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, message)


def page_error(driver) -> str:
    return driver.execute_script("const e = document.getElementById('error'); return e.hidden ? '' : e.textContent;")


def test_search_click_a_hit_and_the_player_is_inside_the_moment(server, browser, tmp_path):
    browser.get(server + "/")
    wait(browser, lambda d: "videos" in d.find_element(By.ID, "library-info").text, message="library info")
    box = browser.find_element(By.ID, "query")
    box.send_keys(QUERY, Keys.ENTER)  # Enter searches
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#hits .hit"), message="no hits appeared")
    assert page_error(browser) == ""
    hits = browser.find_elements(By.CSS_SELECTOR, "#hits .hit")
    assert len(hits) >= 3
    first = hits[0].text
    assert any(name in first for name in ("kitchen", "hallway", "garden"))
    assert "–" in first and ":" in first  # start-end in m:ss
    # click the second hit: the player loads that video and goes to the moment
    target = hits[1]
    start, end = float(target.get_attribute("data-start")), float(target.get_attribute("data-end"))
    video = target.get_attribute("data-video")
    target.click()
    wait(browser, lambda d: d.execute_script(
        "const p = document.getElementById('player'); return p.readyState >= 1 && p.src.includes(arguments[0]) "
        "&& !p.seeking && p.currentTime >= arguments[1] - 0.05", f"/api/videos/{video}/stream", start),
        message="the player did not reach the moment")
    now = browser.execute_script("return document.getElementById('player').currentTime")
    assert start - 0.05 <= now <= end + 0.3, (now, start, end)
    assert "selected" in target.get_attribute("class")
    # it stops at the moment's end: play from just before it
    browser.execute_script("const p = document.getElementById('player'); state.moment.active = true; "
                           "p.currentTime = arguments[0] - 0.3; p.play();", end)
    wait(browser, lambda d: d.execute_script("return document.getElementById('player').paused"), timeout=10,
         message="the player did not stop at the moment's end")
    now = browser.execute_script("return document.getElementById('player').currentTime")
    assert end - 0.1 <= now <= end + 0.3, (now, end)
    # the curve of the selected hit, with the sub-events of the decomposition
    wait(browser, lambda d: d.execute_script("return state.curve !== null && state.curve.moment.start === arguments[0]",
                                             start), message="no curve")
    legend = browser.find_element(By.ID, "legend").text
    assert "sub-event 1: a person opens the door" in legend and "sub-event 2" in legend
    assert browser.execute_script(
        "const c = document.getElementById('curve'); const px = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < px.length; i += 4) n += px[i] > 0;"
        " return n;") > 1000  # something was drawn
    # down moves to the next hit
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_DOWN)
    wait(browser, lambda d: "selected" in d.find_elements(By.CSS_SELECTOR, "#hits .hit")[2].get_attribute("class"))
    # thumbnails arrive after the list, from inside each moment
    wait(browser, lambda d: d.execute_script(
        "const imgs = [...document.querySelectorAll('#hits img')]; "
        "return imgs.length > 0 && imgs.slice(0, 3).every(i => i.complete && i.naturalWidth > 0)"),
        message="thumbnails did not load")
    shot = tmp_path / "serve.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("TFVTG_SCREENSHOT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, keep)


def test_a_path_traversal_request_is_refused(server, browser):
    browser.get(server + "/api/videos/..%2F..%2F..%2F..%2Fetc%2Fpasswd/stream")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "refused" in body and "root:" not in body
    browser.get(server + "/")
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all(['/api/videos/%2e%2e%2f%2e%2e%2fetc%2fpasswd/stream', '/static/%2e%2e%2fserver.py',"
        " '/api/videos/%252e%252e%252fetc/stream', '/api/uploads/..%5c..%5cx/stream']"
        ".map(u => fetch(u).then(r => r.status))).then(done);")
    assert status == [400, 400, 400, 400]


def test_one_video_mode_shows_an_upload_error_in_words_then_grounds_a_real_upload(server, browser, tmp_path):
    from tfvtg.testing import make_video

    browser.get(server + "/")
    wait(browser, lambda d: "videos" in d.find_element(By.ID, "library-info").text)
    browser.find_element(By.ID, "mode-one").click()
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a video\n" * 50)
    browser.find_element(By.ID, "file").send_keys(str(notes))
    wait(browser, lambda d: page_error(d), message="no error shown for a non-video upload")
    message = page_error(browser)
    assert "notes.txt is not a video" in message and "Traceback" not in message
    # a real video: upload, encode (with progress), ask
    clip = make_video(tmp_path / "porch.mp4", n_frames=80, fps=10, size=(160, 96), codec="libx264")
    browser.find_element(By.ID, "file").send_keys(clip)
    wait(browser, lambda d: "ready" in d.find_element(By.ID, "upload-name").text, timeout=60,
         message="the upload was not encoded")
    assert page_error(browser) == ""
    browser.find_element(By.ID, "query").send_keys("a person walks", Keys.ENTER)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#hits .hit"), message="no moment in the upload")
    assert "porch.mp4" in browser.find_element(By.CSS_SELECTOR, "#hits .hit").text
