"""`basam serve` in a real browser: the server as a subprocess on a free loopback port with the
embedded model, Debian's chromium driven by Playwright (no browser download). The masks drawn on
the page's canvas are compared pixel by pixel with the Predictor's for the same prompts.

Skipped with a reason when chromium or playwright is missing; with BASAM_REQUIRE_BROWSER=1 (CI)
that is a failure instead.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

import basam
from basam.serve.samples import render_sample, sample_scene

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("BASAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCENE = "lesion scene"
TIMEOUT_MS = 20_000


def require_browser():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"chromium at {CHROMIUM} (apt-get install -y chromium)")
    if missing:
        reason = "the browser test needs " + " and ".join(missing)
        if os.environ.get("BASAM_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; BASAM_REQUIRE_BROWSER=1 makes this a failure")
        pytest.skip(reason)


def start_server(free_port, *args):
    """`basam serve ARGS` on a free loopback port; → (url, process) once /api/info answers."""
    require_browser()
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "basam.cli", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/api/info", timeout=2).read()
            return url, proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"basam serve did not come up on {url}: {proc.communicate()[0]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def server(free_port):
    url, proc = start_server(free_port)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        context.close()


def drawn_mask(page) -> np.ndarray:
    """What the page drew on its mask canvas: (H, W) bool, alpha > 0."""
    h, w, bits = page.evaluate("""() => {
        const c = document.getElementById('mask'), a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = '';
        for (let i = 3; i < a.length; i += 4) s += a[i] ? '1' : '0';
        return [c.height, c.width, s];
    }""")
    return (np.frombuffer(bits.encode(), np.uint8) == ord("1")).reshape(h, w)


def wait_for_result(page, n: int) -> None:
    page.wait_for_selector(f"body[data-results='{n}'][data-state='ready']")


def iou(a, b) -> float:
    return (a & b).sum() / max(1, (a | b).sum())


def test_click_box_and_everything_in_chromium(server, page, tmp_path):
    scene = sample_scene(SCENE)
    h, w = scene.mask.shape
    predictor = basam.Predictor(basam.load_model("default"), resolution=256)  # the page's default
    predictor.set_image(scene.image)

    page.goto(server + "/")
    page.wait_for_selector("body[data-state='idle']")
    page.select_option("#sample", SCENE)
    page.wait_for_selector("body[data-state='ready']")
    canvas = page.locator("#prompts").bounding_box()
    scale = canvas["width"] / w

    # one click deep inside the object
    y, x = np.unravel_index(ndimage.distance_transform_edt(scene.mask).argmax(), scene.mask.shape)
    page.mouse.click(canvas["x"] + (x + 0.5) * scale, canvas["y"] + (y + 0.5) * scale)
    wait_for_result(page, 1)
    sent = page.evaluate("window.basam.points")
    assert (
        len(sent) == 1 and sent[0]["label"] == 1 and abs(sent[0]["x"] - x - 0.5) < 1 and abs(sent[0]["y"] - y - 0.5) < 1
    )
    want = predictor.predict(
        point_coords=np.array([[sent[0]["x"], sent[0]["y"]]]), point_labels=np.array([1]), multimask_output=False
    )[0][0]
    drawn = drawn_mask(page)
    assert drawn.shape == (h, w) and iou(drawn, want) > 0.99
    assert drawn[y, x] and iou(drawn, scene.mask) > 0.8  # it covers the object clicked on
    shot = tmp_path / "click.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert "model input 256×256" in page.inner_text("#status")

    # SAM's three candidates: each choice draws that mask
    page.check("#multimask")
    wait_for_result(page, 2)
    assert page.locator("#choices button").count() == 3
    page.locator("#choices button").nth(2).click()
    wait_for_result(page, 3)
    masks = predictor.predict(point_coords=np.array([[sent[0]["x"], sent[0]["y"]]]), point_labels=np.array([1]))[0]
    assert iou(drawn_mask(page), masks[2]) > 0.99
    page.uncheck("#multimask")
    wait_for_result(page, 4)

    # clear, then drag a box around the object
    page.click("#clear")
    assert not drawn_mask(page).any()
    ys, xs = np.nonzero(scene.mask)
    x0, y0, x1, y1 = xs.min() - 4, ys.min() - 4, xs.max() + 5, ys.max() + 5
    page.mouse.move(canvas["x"] + x0 * scale, canvas["y"] + y0 * scale)
    page.mouse.down()
    page.mouse.move(canvas["x"] + x1 * scale, canvas["y"] + y1 * scale, steps=5)
    page.mouse.up()
    wait_for_result(page, 5)
    box = page.evaluate("window.basam.box")
    assert np.allclose(box, [x0, y0, x1, y1], atol=1) and page.evaluate("window.basam.points") == []
    want = predictor.predict(box=np.array(box), multimask_output=False)[0][0]
    assert iou(drawn_mask(page), want) > 0.99 and iou(want, scene.mask) > 0.8

    # a background point on top (right click), then undo it: back to the box's mask
    page.mouse.click(canvas["x"] + 3 * scale, canvas["y"] + 3 * scale, button="right")
    wait_for_result(page, 6)
    assert page.evaluate("window.basam.points")[0]["label"] == 0
    page.click("#undo")
    wait_for_result(page, 7)
    assert iou(drawn_mask(page), want) > 0.99

    # the shown mask downloads as PNG and as COCO RLE
    with page.expect_download() as png:
        page.click("#download-png")
    np.testing.assert_array_equal(np.asarray(Image.open(png.value.path())).astype(bool), want)
    with page.expect_download() as rle:
        page.click("#download-rle")
    saved = json.loads(open(rle.value.path()).read())
    decoded = mask_utils.decode({**saved["segmentation"], "counts": saved["segmentation"]["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), want)
    assert saved["box"] == box and saved["resolution"] == "256"

    # the resolution selector: auto runs this 384 px image at its own size with scaled windows
    page.select_option("#resolution", "auto")
    wait_for_result(page, 8)
    assert "model input 384×384 (resolution auto, attention sam, scaled windows)" in page.inner_text("#status")
    auto = basam.Predictor(predictor.model, resolution="auto")
    auto.set_image(scene.image)
    assert iou(drawn_mask(page), auto.predict(box=np.array(box), multimask_output=False)[0][0]) > 0.99
    page.select_option("#resolution", "256")
    wait_for_result(page, 9)

    # segment everything: one colour per mask, drawn where the records' masks are
    page.select_option("#points-per-side", "8")
    page.click("#everything")
    wait_for_result(page, 10)
    records = page.evaluate("window.basam.everything.records")
    union = np.zeros((h, w), bool)
    for record in records:
        union |= mask_utils.decode({**record["segmentation"], "counts": record["segmentation"]["counts"].encode()}) > 0
    assert records and iou(drawn_mask(page), union) > 0.99 and iou(union, scene.mask) > 0.8
    assert f"{len(records)} masks" in page.inner_text("#status")
    page.screenshot(path=str(tmp_path / "everything.png"))

    # a file that is no image: the server's message is shown, and the page still works
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"no image"}])
    page.wait_for_selector("#error:not([hidden])")
    assert "not an image" in page.inner_text("#error")
    # an image dropped on the page opens, and the error is gone
    png = base64.b64encode(render_sample("salient scene")).decode()
    page.evaluate(
        """(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)), data = new DataTransfer();
        data.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
        document.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    }""",
        png,
    )
    page.wait_for_selector("body[data-state='ready']")
    assert page.is_hidden("#error") and "dropped.png: 512×384" in page.inner_text("#status")


def test_the_hq_option_shows_only_for_an_hq_model(server, page, free_port):
    page.goto(server + "/")
    page.wait_for_selector("body[data-state='idle']")
    assert page.locator("#hq-tools").is_hidden()  # the embedded model is plain SAM
    url, proc = start_server(free_port, "--model", "hq_vit_tiny")  # random weights: only the page is looked at
    try:
        page.goto(url + "/")
        page.wait_for_selector("body[data-state='idle']")
        assert page.locator("#hq-tools").is_visible()
        assert not page.locator("#hq-token-only").is_checked()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
