"""``facemask serve``: one copy of a model (a run or an ensemble) behind an HTTP API (FastAPI + uvicorn), with a page
to try it by hand.

    POST /predict   a photo (multipart field ``file``, or the raw image as the body) -> every face and its answers
    GET  /health    liveness (never needs the token)
    GET  /info      runs, backbones, input sizes, engines, class names
    GET  /          the page (served from the package: no CDN, no build step, works offline)
    GET  /docs      OpenAPI docs (FastAPI's)

Throughput: decoding and face detection run in a thread pool off the event loop; the faces of concurrent requests
are micro-batched (up to --max-batch photos, or --max-wait-ms after the first) and go through the network in one
pass on one worker thread, so one copy of the model serves everyone. Bad requests get a 4xx JSON
``{"error": "..."}`` and the server keeps serving; no request path or field ever names a file on the server.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import ipaddress
import logging
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from facemask.data.images import MAX_IMAGE_PIXELS
from facemask.errors import ConfigError, DataError, FacemaskError
from facemask.inference.api import Model, Photo, prepare
from facemask.io import cpu_count

log = logging.getLogger("facemask.serve")
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
              "/style.css": ("style.css", "text/css")}
PUBLIC = {"/health", *PAGE_FILES}  # the page is static and holds no data; it sends the token with each request


def parse_bytes(text: str) -> int:
    """"10MB" -> 10_000_000; also KB, GB, KiB, MiB, plain bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMG]i?B|B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ConfigError(f"--max-bytes {text!r}: expected a size such as 10MB, 500KB or 2000000")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}[unit]
    if number * scale < 1:
        raise ConfigError(f"--max-bytes {text!r} must be at least 1 byte")
    return int(number * scale)


@dataclass
class Settings:
    token: str | None = None
    max_bytes: int = 10_000_000
    max_batch: int = 16
    max_wait_ms: float = 10.0
    max_pixels: int = 40_000_000


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Batcher:
    """Collects prepared photos from concurrent requests into micro-batches for the network."""

    def __init__(self, model: Model, max_batch: int, max_wait_ms: float):
        self.model, self.max_batch, self.max_wait = model, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue()
        self.network = ThreadPoolExecutor(1, thread_name_prefix="facemask-network")  # one copy of the model

    async def answer(self, photo: Photo) -> tuple[Photo, int]:
        """The photo with its answers, and the size of the micro-batch that answered it."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((photo, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            photos = [photo for photo, _ in batch]
            try:
                await loop.run_in_executor(self.network, self.model.answer, photos)
            except Exception as err:  # noqa: BLE001 - every waiting request gets the error, the loop goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for photo, future in batch:
                if not future.done():
                    future.set_result((photo, len(batch)))


class FaceOut(BaseModel):
    """One face (or the whole photo, or a note that no face was found) and its answers."""

    model_config = ConfigDict(populate_by_name=True)
    status: str = Field(description="face | whole_photo (run without a face crop) | fallback | no_face")
    box: list[int] | None = Field(None, description="left, top, right, bottom in photo pixels")
    score: float | None = Field(None, description="the face detector's score")
    mask: str | None = Field(None, description="wear | incorrect | not wear")
    gender: str | None = Field(None, description="male | female")
    age: str | None = Field(None, description="<30 | 30-59 | >=60")
    class_: int | None = Field(None, alias="class", description="class id 0..17 = mask*6 + gender*3 + age")
    class_name: str | None = None
    probs: dict = Field(default_factory=dict, description="{mask: {name: p}, gender: ..., age: ..., classes: "
                                                          "[18 probabilities]}")
    note: str = ""


class PredictOut(BaseModel):
    faces: list[FaceOut]
    width: int = Field(description="the photo's width in pixels (after EXIF rotation)")
    height: int
    model: str = Field(description="the run (or runs, joined by +) that answered")
    ms: float = Field(description="server time for this request, milliseconds")
    batch: int = Field(description="photos in the micro-batch that went through the network with this one")


class ErrorOut(BaseModel):
    error: str


def create_app(model: Model, settings: Settings) -> FastAPI:
    """The FastAPI app around one model."""
    state: dict = {}
    prep_pool = ThreadPoolExecutor(max(1, cpu_count()), thread_name_prefix="facemask-decode")
    # a photo's pixels cost memory in every decoding thread: the server's own cap, checked before decoding
    framing = dataclasses.replace(model.framing, max_pixels=min(model.framing.max_pixels, settings.max_pixels))
    batcher_holder: dict = {}

    @asynccontextmanager
    async def lifespan(app):
        batcher = Batcher(model, settings.max_batch, settings.max_wait_ms)
        batcher_holder["batcher"] = batcher
        app.state.batcher = batcher
        task = asyncio.create_task(batcher.run())
        state["started"] = time.time()
        try:
            yield
        finally:
            task.cancel()
            batcher.network.shutdown(wait=False)
            prep_pool.shutdown(wait=False)

    app = FastAPI(title="facemask", version=_version(), lifespan=lifespan,
                  description="Mask (worn / incorrect / none), gender and age group of every face in a photo.")
    model_name = "+".join(e.run.name for e in model.engines)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if settings.token and request.url.path not in PUBLIC:
            given = request.headers.get("authorization", "")
            expected = f"Bearer {settings.token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'")
        if request.url.path == "/predict" and request.method == "POST":
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > settings.max_bytes + 4096):
                return error(413, f"upload larger than --max-bytes ({settings.max_bytes} bytes)")
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = {404: "not found", 405: f"method {request.method} not allowed on {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        return error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error(400, "bad request: " + "; ".join(str(e.get("msg", e)) for e in exc.errors())[:300])

    @app.exception_handler(HTTPError)
    async def own_error(request: Request, exc: HTTPError):
        return error(exc.status, exc.message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug of ours: say so in JSON, keep serving
        log.exception("error answering %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server keeps serving")

    async def read_limited(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_bytes + 65536:  # multipart framing on top of the file
                raise HTTPError(413, f"upload larger than --max-bytes ({settings.max_bytes} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def upload(request: Request) -> bytes:
        body = await read_limited(request)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            async def replay():
                return {"type": "http.request", "body": body, "more_body": False}
            try:
                form = await Request(request.scope, receive=replay).form(max_files=1, max_fields=8)
            except Exception as err:  # noqa: BLE001 - a malformed form is the client's error
                raise HTTPError(400, f"malformed multipart form: {err}") from err
            field = form.get("file")
            if field is None or isinstance(field, str):
                raise HTTPError(400, "no 'file' field in the form: send the photo as multipart field 'file' or "
                                     "as the raw request body")
            data = await field.read()
        else:
            data = body
        if not data:
            raise HTTPError(400, "empty upload: no image bytes")
        if len(data) > settings.max_bytes:
            raise HTTPError(413, f"upload larger than --max-bytes ({settings.max_bytes} bytes)")
        return data

    @app.post("/predict", response_model=PredictOut, response_model_by_alias=True,
              responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 413: {"model": ErrorOut}},
              summary="Every face of a photo, with its mask, gender and age group")
    async def predict(request: Request):
        """Send the photo as multipart field ``file`` or as the raw body (JPEG, PNG, WebP, BMP, ...)."""
        start = time.perf_counter()
        data = await upload(request)
        loop = asyncio.get_running_loop()
        try:
            photo = await loop.run_in_executor(prep_pool, prepare, data, framing)
        except DataError as err:
            if "decompression bomb" in str(err):
                raise HTTPError(413, f"{err} (this server's --max-megapixels)") from err
            raise HTTPError(400, str(err)) from err
        photo, batch = await batcher_holder["batcher"].answer(photo)
        return {"faces": [face.to_dict() for face in photo.faces], "width": photo.width, "height": photo.height,
                "model": model_name, "ms": round(1000 * (time.perf_counter() - start), 2), "batch": batch}

    @app.get("/health", summary="Liveness: the model is loaded")
    async def health():
        return {"status": "ok", "model": model_name, "uptime_s": round(time.time() - state.get("started",
                                                                                             time.time()), 1)}

    @app.get("/info", summary="The model: runs, backbones, input sizes, engines, class names")
    async def info():
        details = dict(model.info)
        details["runs"] = [e.run.name for e in model.engines]  # names, not the server's paths
        if details.get("masked_faces"):
            details["masked_faces"] = Path(details["masked_faces"]).name
        details["max_bytes"], details["max_batch"] = settings.max_bytes, settings.max_batch
        details["max_pixels"] = framing.max_pixels
        return details

    def page_route(path: str, name: str, media: str):
        content = resources.files("facemask.serve").joinpath("page", name).read_bytes()

        async def page():
            return Response(content, media_type=media, headers={"Cache-Control": "no-cache"})
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)

    for path, (name, media) in PAGE_FILES.items():
        page_route(path, name, media)
    return app


def _version() -> str:
    from facemask import __version__

    return __version__


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None, insecure: bool) -> None:
    if not _is_loopback(host) and not token and not insecure:
        raise ConfigError(f"--host {host} is reachable from other machines: set --token TOKEN (clients send "
                          "'Authorization: Bearer TOKEN') or pass --insecure to serve without one")


def serve(args: argparse.Namespace) -> None:
    """``facemask serve``: check the options, load the model (exporting it first with --export), bind, serve."""
    import uvicorn

    from facemask.inference.api import load
    from facemask.inference.export import export_onnx
    from facemask.inference.predict import check_runs

    token = args.token or os.environ.get("FACEMASK_TOKEN") or None
    check_binding(args.host, token, args.insecure)
    if not 0.01 <= args.max_megapixels <= MAX_IMAGE_PIXELS / 1e6:
        raise ConfigError(f"--max-megapixels {args.max_megapixels} must be between 0.01 and "
                          f"{MAX_IMAGE_PIXELS / 1e6:.0f}")
    settings = Settings(token, parse_bytes(args.max_bytes), args.max_batch, args.max_wait_ms,
                        round(args.max_megapixels * 1e6))
    if settings.max_batch < 1:
        raise ConfigError(f"--max-batch {args.max_batch} must be at least 1")
    if not 0 <= settings.max_wait_ms <= 10_000:
        raise ConfigError(f"--max-wait-ms {args.max_wait_ms} must be between 0 and 10000")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} must be between 0 and 65535")
    runs = check_runs(args.runs, args.checkpoint)
    if args.masked_faces is not None:  # a bad filter or a run it cannot serve fails here, before the export
        from facemask.data.faces import load_masked_filter

        load_masked_filter(args.masked_faces)
        for run in runs:
            face_crop = run.config().data.face_crop
            if face_crop != "hog":
                raise ConfigError(f"--masked-faces works with runs trained with data.face_crop=hog; {run.path} "
                                  f"has {face_crop!r}")
    if args.export:
        from facemask.inference.engines import onnx_is_current

        for run in runs:
            if not onnx_is_current(run):
                log.info("exporting %s to ONNX", run.path)
                export_onnx(run.path, checkpoint=run.checkpoint)
    model = load([run.path for run in runs], device=args.device, engine=args.engine, tta=args.tta,
                 checkpoint=args.checkpoint, weights=args.weights, mask_weights=args.mask_weights, vote=args.vote,
                 precision=args.precision,
                 min_face=args.min_face, face_threshold=args.face_threshold, no_face=args.no_face,
                 batch_size=64, trust_run_code=args.trust_run_code, masked_faces=args.masked_faces)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        raise FacemaskError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from err
    sock.listen(128)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    print(f"facemask serve: {', '.join(model.info['runs'])} (engine {', '.join(model.info['engines'])}) on "
          f"http://{shown}:{port}  (token {'required' if token else 'off'}; page at /, docs at /docs)", flush=True)
    config = uvicorn.Config(create_app(model, settings), log_level="warning", access_log=not args.quiet,
                            timeout_keep_alive=5, limit_concurrency=256)
    uvicorn.Server(config).run(sockets=[sock])
