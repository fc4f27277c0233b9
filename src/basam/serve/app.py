"""The ASGI app of `basam serve`: the static page and a JSON API over an Engine.

    GET  /                     the page
    GET  /api/info             model, choices, limits, samples
    POST /api/images           body = an image file → {image_id, width, height, note}
    POST /api/samples/{name}   the same for a bundled sample
    GET  /api/images/{id}      the image as the model sees it (PNG)
    POST /api/predict          prompts → masks (PNG + COCO RLE), scores, times
    POST /api/everything       the automatic mask generator → records

Every error is JSON {"error": "one line"} with a 4xx status; nothing a client sends stops the server.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from basam.serve.engine import Engine, RequestError

STATIC = Path(__file__).parent / "static"
MAX_JSON_BYTES = 1 << 20


def api(handler):
    """Turn RequestError into its status and {"error": message}; anything else into a 500 with a
    one-line message, so that one bad request never takes the server down."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except Exception as e:  # noqa: BLE001 — reported to the page, the server goes on
            return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)

    return wrapped


async def read_body(request: Request, limit_bytes: int, what: str) -> bytes:
    """The request body, refused with 413 as soon as it passes limit_bytes."""
    too_big = RequestError(413, f"{what} larger than {limit_bytes / 2**20:g} MB (this server's limit)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> dict:
    body = await read_body(request, MAX_JSON_BYTES, "JSON request")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(400, f"malformed JSON: {e}") from None


def create_app(engine: Engine) -> Starlette:
    upload_limit = int(engine.settings.max_upload_mb * 2**20)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    @api
    async def info(request: Request) -> Response:
        return JSONResponse(engine.info())

    @api
    async def upload(request: Request) -> Response:
        data = await read_body(request, upload_limit, "upload")
        return JSONResponse(await engine.call(engine.add_image, data))

    @api
    async def sample(request: Request) -> Response:
        return JSONResponse(await engine.call(engine.add_sample, request.path_params["name"]))

    @api
    async def image(request: Request) -> Response:
        png = await engine.call(engine.image_png, request.path_params["image_id"])
        return Response(png, media_type="image/png")

    @api
    async def predict(request: Request) -> Response:
        return JSONResponse(await engine.call(engine.predict, await read_json(request)))

    @api
    async def everything(request: Request) -> Response:
        return JSONResponse(await engine.call(engine.everything, await read_json(request)))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        engine.close()

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/images", upload, methods=["POST"]),
        Route("/api/images/{image_id}", image),
        Route("/api/samples/{name}", sample, methods=["POST"]),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/everything", everything, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
