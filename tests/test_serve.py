"""`basam serve`'s JSON API in-process (Starlette's TestClient over httpx): the masks are the
Predictor's for the same inputs, encodings are cached, and every bad input is a 4xx with one line."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="basam serve's API tests need basam[serve] (pip install -e '.[test]')")
pytest.importorskip("httpx", reason="the API tests need httpx (pip install -e '.[test]')")
from pycocotools import mask as mask_utils  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import basam  # noqa: E402
from basam import cli  # noqa: E402
from basam.serve.app import create_app  # noqa: E402
from basam.serve.engine import LRU, Engine, ServeSettings  # noqa: E402
from basam.serve.samples import render_sample, sample_scene  # noqa: E402

SCENE = "salient scene"


@pytest.fixture(scope="module")
def model(one_thread):
    return basam.load_model("default")


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(Engine(model))) as c:
        yield c


@pytest.fixture(scope="module")
def scene():
    return sample_scene(SCENE)


def png_bytes(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def decoded(mask_json) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(mask_json["png"])))).astype(bool)


def interior_point(mask) -> list[float]:
    from scipy import ndimage

    y, x = np.unravel_index(ndimage.distance_transform_edt(mask).argmax(), mask.shape)
    return [float(x) + 0.5, float(y) + 0.5]


def upload(client, data: bytes) -> dict:
    r = client.post("/api/images", content=data)
    assert r.status_code == 200, r.text
    return r.json()


def predictor_for(model, image, resolution=256, **attention):
    if attention:
        model = basam.load_model("default", **attention)
    p = basam.Predictor(model, resolution=resolution)
    p.set_image(image)
    return p


def test_upload_gives_a_content_id_and_the_pixels_back(client, scene):
    data = png_bytes(scene.image)
    first, again = upload(client, data), upload(client, data)
    assert first == again and first["width"] == 512 and first["height"] == 384
    other = upload(client, png_bytes(scene.image[:, ::-1].copy()))
    assert other["image_id"] != first["image_id"]
    r = client.get(f"/api/images/{first['image_id']}")
    assert r.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))), scene.image)


def test_point_prompt_gives_the_predictors_masks(client, model, scene):
    image_id = client.post(f"/api/samples/{SCENE}").json()["image_id"]
    assert render_sample(SCENE) == png_bytes(scene.image)  # the sample is that scene, losslessly
    point = interior_point(scene.mask)
    predictor = predictor_for(model, scene.image)
    body = {"image_id": image_id, "points": [point], "labels": [1]}
    r = client.post("/api/predict", json={**body, "multimask": True}).json()
    masks, scores, _ = predictor.predict(point_coords=np.array([point]), point_labels=np.array([1]))
    assert len(r["masks"]) == 3 and r["best"] == int(np.argmax(scores))
    for got, want, score in zip(r["masks"], masks, scores):
        np.testing.assert_array_equal(decoded(got), want)
        np.testing.assert_array_equal(mask_utils.decode({**got["rle"], "counts": got["rle"]["counts"].encode()}), want)
        assert got["area"] == want.sum() and got["score"] == pytest.approx(float(score), abs=1e-6)
    assert r["input_size"] == [256, 256] and r["resized_size"] == [192, 256] and r["resolution"] == "256"
    # single mask, the default (the embedded model was trained on SAM's single-mask output only)
    single = client.post("/api/predict", json=body).json()
    assert len(single["masks"]) == 1
    mask = predictor.predict(point_coords=np.array([point]), point_labels=np.array([1]), multimask_output=False)[0][0]
    np.testing.assert_array_equal(decoded(single["masks"][0]), mask)
    assert mask[int(point[1]), int(point[0])] and (mask & scene.mask).sum() / (mask | scene.mask).sum() > 0.7


def test_box_and_points_single_mask_native_resolution(client, model, scene):
    image_id = upload(client, png_bytes(scene.image))["image_id"]
    ys, xs = np.nonzero(scene.mask)
    box = [float(xs.min()) - 2, float(ys.min()) - 2, float(xs.max()) + 3, float(ys.max()) + 3]
    points, labels = [interior_point(scene.mask), [5.0, 5.0]], [1, 0]
    body = {
        "image_id": image_id,
        "points": points,
        "labels": labels,
        "box": box,
        "multimask": False,
        "resolution": "native",
    }
    r = client.post("/api/predict", json=body).json()
    masks, scores, _ = predictor_for(model, scene.image, "native").predict(
        point_coords=np.array(points), point_labels=np.array(labels), box=np.array(box), multimask_output=False
    )
    assert len(r["masks"]) == 1 and r["input_size"] == [384, 512]
    np.testing.assert_array_equal(decoded(r["masks"][0]), masks[0])
    assert r["masks"][0]["score"] == pytest.approx(float(scores[0]), abs=1e-6)


def test_encoding_is_cached_per_image_resolution_and_attention(client, model, scene):
    image_id = upload(client, png_bytes(scene.image[::2, ::2].copy()))["image_id"]
    ask = lambda **kw: client.post("/api/predict", json={"image_id": image_id, "box": [10, 10, 100, 90], **kw}).json()  # noqa: E731
    first, second = ask(), ask()
    assert not first["cached"] and first["encode_ms"] > 0 and second["cached"] and second["encode_ms"] == 0
    assert [m["png"] for m in first["masks"]] == [m["png"] for m in second["masks"]]
    at_512 = ask(resolution="512", attention="basam")
    assert not at_512["cached"] and at_512["input_size"] == [512, 512] and at_512["attention"] == "basam"
    masks, _, _ = predictor_for(model, scene.image[::2, ::2], 512, attn="basam").predict(
        box=np.array([10, 10, 100, 90]), multimask_output=False
    )
    for got, want in zip(at_512["masks"], masks):
        np.testing.assert_array_equal(decoded(got), want)
    assert ask()["cached"]  # the 256 px sam encoding is still there, whatever the encoder is set to now


def test_auto_resolution_and_scaled_windows_give_the_predictors_masks(client, model, scene):
    image_id = upload(client, png_bytes(scene.image))["image_id"]
    box = [100.0, 150.0, 300.0, 350.0]
    ask = lambda **kw: client.post("/api/predict", json={"image_id": image_id, "box": box, **kw}).json()  # noqa: E731
    auto, scaled = ask(resolution="auto"), ask(resolution="512", windows="scaled")
    assert auto["input_size"] == [384, 512] and auto["windows"] == "scaled"  # 512 px > 256: native, scaled
    assert scaled["input_size"] == [512, 512] and scaled["windows"] == "scaled" and not scaled["cached"]
    for answer, predictor in (
        (auto, predictor_for(model, scene.image, "auto")),
        (scaled, predictor_for(model, scene.image, 512, windows="scaled")),
    ):
        want = predictor.predict(box=np.array(box), multimask_output=False)[0][0]
        np.testing.assert_array_equal(decoded(answer["masks"][0]), want)
    fixed = ask(resolution="512")
    assert fixed["windows"] == "fixed" and decoded(fixed["masks"][0]).sum() != decoded(scaled["masks"][0]).sum()
    info = client.get("/api/info").json()
    assert "auto" in info["resolution_choices"] and info["window_choices"] == ["fixed", "scaled"]


def test_lru_keeps_the_most_recently_used():
    lru = LRU(2)
    lru.put("a", 1), lru.put("b", 2)
    assert lru.get("a") == 1
    lru.put("c", 3)
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3


def test_an_evicted_image_is_a_404_and_comes_back_on_upload(model, scene):
    with TestClient(create_app(Engine(model, ServeSettings(cached_images=1, cached_encodings=1)))) as c:
        a, b = png_bytes(scene.image), png_bytes(scene.image[::-1].copy())
        first = upload(c, a)["image_id"]
        upload(c, b)
        r = c.post("/api/predict", json={"image_id": first, "points": [[5, 5]], "labels": [1]})
        assert r.status_code == 404 and "upload the image first" in r.json()["error"]
        upload(c, a)
        assert c.post("/api/predict", json={"image_id": first, "points": [[5, 5]], "labels": [1]}).status_code == 200


def test_the_page_and_its_files_are_served_locally(client):
    page = client.get("/")
    assert (
        page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.replace("http-equiv", "")
    )
    for name in ("app.js", "style.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and "://" not in r.text  # no CDN, nothing fetched from elsewhere
    info = client.get("/api/info").json()
    assert info["model"] == "mini" and info["resolution"] == "256" and SCENE in info["samples"]


BAD_PROMPTS = [
    ({"points": [[600, 10]], "labels": [1]}, 400, "outside the 512×384 image"),
    ({"points": [[10, -1]], "labels": [1]}, 400, "outside"),
    ({"box": [0, 0, 100, 400]}, 400, "outside"),
    ({"box": [50, 50, 10, 10]}, 400, "x0 < x1"),
    ({"box": [1, 2, 3]}, 400, "box must be a list of 4 numbers"),
    ({"points": [[10, 10]], "labels": []}, 400, "one label per point"),
    ({"points": [[10, 10]], "labels": [2]}, 400, "labels must be 1"),
    ({"points": [["a", 10]], "labels": [1]}, 400, "point 0 must be a list of 2 numbers"),
    ({"points": [[float("nan"), 10]], "labels": [1]}, 400, "not finite"),
    ({"points": [[10, 10]], "labels": [1], "resolution": "1000"}, 400, "multiple of 16"),
    ({"points": [[10, 10]], "labels": [1], "resolution": "huge"}, 400, "expected an integer"),
    ({"points": [[10, 10]], "labels": [1], "attention": "magic"}, 400, "choose from sam, nsf, bm, basam"),
    ({"points": [[10, 10]], "labels": [1], "multimask": "yes"}, 400, "multimask must be true or false"),
    ({"points": [[10, 10]], "labels": [1], "windows": "round"}, 400, "windows 'round': choose from fixed, scaled"),
]


@pytest.mark.parametrize("prompt,status,message", BAD_PROMPTS, ids=[m for _, _, m in BAD_PROMPTS])
def test_bad_prompts_are_4xx_with_one_line(client, scene, prompt, status, message):
    image_id = upload(client, png_bytes(scene.image))["image_id"]
    r = client.post(
        "/api/predict",
        content=json.dumps({"image_id": image_id, **prompt}),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == status and message in r.json()["error"] and "\n" not in r.json()["error"]


def test_bad_requests_and_uploads_are_4xx_and_the_server_goes_on(model, scene):
    settings = ServeSettings(max_upload_mb=0.5, max_megapixels=0.25)
    with TestClient(create_app(Engine(model, settings))) as c:
        cases = [
            (c.post("/api/images", content=b"just some text"), 415, "not an image"),
            (c.post("/api/images", content=b""), 400, "empty upload"),
            (c.post("/api/images", content=b"\x89PNG\r\n\x1a\n" + b"\0" * 100), 415, "not an image"),
            (c.post("/api/images", content=b"x" * (600 * 1024)), 413, "larger than 0.5 MB"),
            (c.post("/api/images", content=png_bytes(np.zeros((600, 500, 3), np.uint8))), 413, "0.3 megapixels"),
            (c.post("/api/predict", content=b"{not json"), 400, "malformed JSON"),
            (c.post("/api/predict", json=[1, 2]), 400, "must be a JSON object"),
            (
                c.post("/api/predict", json={"image_id": "0123456789abcdef", "points": [[1, 1]], "labels": [1]}),
                404,
                "unknown image id",
            ),
            (c.post("/api/predict", json={"points": [[1, 1]], "labels": [1]}), 404, "unknown image id"),
            (c.get("/api/images/nope"), 404, "unknown image id"),
            (c.post("/api/samples/nope"), 404, "unknown sample"),
        ]
        for r, status, message in cases:
            assert r.status_code == status and message in r.json()["error"], (r.status_code, r.text)
        small = upload(c, png_bytes(scene.image[:200, :300].copy()))
        r = c.post("/api/predict", json={"image_id": small["image_id"], "points": [[20, 20]], "labels": [1]})
        assert r.status_code == 200 and len(r.json()["masks"]) == 1


def test_cli_errors_are_one_line(capsys, monkeypatch):
    assert cli.main(["serve", "--port", "70000"]) == 2
    assert "basam serve: error: --port 70000" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)  # as if basam[serve] were not installed
    assert cli.main(["serve"]) == 2
    assert "pip install 'basam[serve]'" in capsys.readouterr().err


def test_inference_runs_off_the_event_loop_one_request_at_a_time(model, scene):
    """A slow encode (native 768×576) does not hold up /api/info; two prompts sent at once on
    different images each get their own image's answer."""
    import asyncio

    import httpx

    engine = Engine(model)
    big = np.asarray(Image.fromarray(scene.image).resize((768, 576)))
    done = []

    async def run():
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as c:
            ids = [(await c.post("/api/images", content=png_bytes(im))).json()["image_id"] for im in (big, scene.image)]

            async def ask(name, *args, **kwargs):
                r = await (c.post(*args, **kwargs) if kwargs else c.get(*args))
                done.append(name)
                return r.json()

            prompt = {"points": [[100, 100]], "labels": [1], "resolution": "native"}
            return await asyncio.gather(
                ask("big", "/api/predict", json={"image_id": ids[0], **prompt}),
                ask("small", "/api/predict", json={"image_id": ids[1], **prompt}),
                ask("info", "/api/info"),
            )

    big_answer, small_answer, _ = asyncio.run(run())
    engine.close()
    assert done.index("info") < done.index("big") and big_answer["input_size"] == [576, 768]
    for image, answer in ((big, big_answer), (scene.image, small_answer)):
        want = predictor_for(model, image, "native").predict(
            point_coords=np.array([[100, 100]]), point_labels=np.array([1]), multimask_output=False
        )[0][0]
        np.testing.assert_array_equal(decoded(answer["masks"][0]), want)


def test_everything_gives_the_generators_records_and_their_label_image(client, model):
    scene = sample_scene("lesion scene")
    image_id = client.post("/api/samples/lesion scene").json()["image_id"]
    for multimask in (False, True):
        r = client.post("/api/everything", json={"image_id": image_id, "points_per_side": 8, "multimask": multimask})
        assert r.status_code == 200, r.text
        answer = r.json()
        want = basam.AutomaticMaskGenerator(
            model, points_per_side=8, output_mode="coco_rle", resolution=256, multimask_output=multimask
        ).generate(scene.image)
        assert answer["records"] == sorted(want, key=lambda rec: -rec["area"])
    # single-mask output (the embedded model's trained one, the default) finds the lesion
    r = client.post("/api/everything", json={"image_id": image_id, "points_per_side": 8}).json()
    masks = [
        mask_utils.decode({**rec["segmentation"], "counts": rec["segmentation"]["counts"].encode()}).astype(bool)
        for rec in r["records"]
    ]
    assert masks and max(iou(m, scene.mask) for m in masks) > 0.9
    labels = np.asarray(Image.open(io.BytesIO(base64.b64decode(r["labels_png"])))).astype(np.int64)
    want = np.zeros(scene.mask.shape, np.int64)
    for k, m in enumerate(masks, 1):
        want[m] = k
    np.testing.assert_array_equal(labels[..., 0] + 256 * labels[..., 1], want)
    assert r["input_size"] == [256, 256] and r["options"]["pred_iou_thresh"] == 0.88
    bad = client.post("/api/everything", json={"image_id": image_id, "points_per_side": 0})
    assert bad.status_code == 400 and "points_per_side must be an integer from 1 to 64" in bad.json()["error"]


def iou(a, b) -> float:
    return (a & b).sum() / max(1, (a | b).sum())
