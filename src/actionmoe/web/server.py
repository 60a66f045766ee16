"""``actionmoe serve``: the upload page and a JSON API around a Predictor, on FastAPI + uvicorn.

    GET  /               the upload page (drag and drop, a preview, ranked actions as bars, a timeline)
    GET  /api/info       {"classes": [...], "checkpoint": ...}
    GET  /healthz        {"status": "ok"}
    POST /api/predict    a multipart upload (field ``file``) or the video as the raw body;
                         query ``top_k``, and ``window`` / ``stride`` for a timeline
    GET  /docs           the OpenAPI description

An upload streams to a temporary file (never whole into memory) that is deleted after the
prediction, whatever happens; only a sanitised suffix of the client's file name is used, so no
name can place a file anywhere. Predictions run in a bounded pool: ``workers`` at a time and
``queue`` waiting; beyond that the answer is 503 with Retry-After instead of an unbounded queue.
Every prediction has a time limit (504 past it). A body over ``max_upload_bytes`` is 413, a file
that is not a decodable video 422 with the reason.
"""

import asyncio
import contextlib
import logging
import os
import re
import socket
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from actionmoe.errors import ActionMoEError, UsageError, VideoDecodeError
from actionmoe.inference import Predictor

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ServiceLimits:
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    workers: int = 1  # predictions running at once
    queue: int = 4  # predictions waiting; more are refused with 503
    timeout_s: float = 300.0  # one prediction's time limit


class _RefusedError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def create_app(
    predictor: Predictor, top_k: int = 5, limits: ServiceLimits = ServiceLimits(), upload_dir: Path | None = None
):
    """The FastAPI application serving ``predictor``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    executor = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="predict")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        executor.shutdown(wait=False, cancel_futures=True)  # the prediction threads end with the service

    app = FastAPI(title="actionmoe", description="Ranked actions in uploaded videos.", lifespan=lifespan)
    slots = threading.BoundedSemaphore(limits.workers + limits.queue)
    page = (resources.files("actionmoe.web") / "page.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/info")
    def info() -> dict:
        return {"classes": list(predictor.classes), "checkpoint": predictor.source.name}

    @app.post("/api/predict")
    async def predict(request: Request, top_k: int = top_k, window: str | None = None, stride: str = "1.0"):
        """A multipart upload (field ``file``) or the raw body; ``window``/``stride`` (s, or ``48f``) for a timeline."""
        if not slots.acquire(blocking=False):
            return JSONResponse(
                {"error": "busy: every prediction slot is taken; retry shortly"}, 503, headers={"Retry-After": "2"}
            )
        try:
            return await _handle(request, predictor, top_k, window, stride, limits, executor, upload_dir)
        except _RefusedError as refused:
            return JSONResponse({"error": refused.message}, refused.status, headers=refused.headers)
        finally:
            slots.release()

    return app


async def _handle(
    request,
    predictor: Predictor,
    top_k: int,
    window: str | None,
    stride: str,
    limits: ServiceLimits,
    executor: ThreadPoolExecutor,
    upload_dir: Path | None,
) -> dict:
    if top_k < 1:
        raise _RefusedError(400, f"top_k must be at least 1, got {top_k}")
    declared = int(request.headers.get("content-length") or 0)
    if declared > limits.max_upload_bytes + 64 * 1024:  # a multipart envelope adds a little
        raise _RefusedError(413, f"video too large ({declared} bytes; limit {limits.max_upload_bytes})")
    async with _spooled_upload(request, limits.max_upload_bytes, upload_dir) as (path, name):
        job = _job(predictor, path, name, top_k, window, stride)
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(executor, job), limits.timeout_s)
        except TimeoutError:
            raise _RefusedError(504, f"the prediction took longer than {limits.timeout_s:g} s") from None
        except VideoDecodeError as exc:
            raise _RefusedError(422, str(exc).replace(str(path), name)) from None
        except UsageError as exc:
            raise _RefusedError(400, str(exc)) from None


def _job(predictor: Predictor, path: Path, name: str, top_k: int, window: str | None, stride: str):
    def run() -> dict:
        if window is not None:
            from actionmoe.timeline import predict_timeline

            return {"video": name, **predict_timeline(predictor, path, window, stride, top_k).to_json(), "path": name}
        result = predictor.predict(path, top_k)
        return {"video": name, **result.to_json(), "path": name}

    return run


def safe_suffix(name: str) -> str:
    """The client's file suffix, if it is a plain one (letters and digits, at most 8): never a path."""
    suffix = Path(name.replace("\\", "/")).suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix or "") else ".bin"


@contextlib.asynccontextmanager
async def _spooled_upload(request, limit: int, upload_dir: Path | None):
    """The upload in a private temporary file, deleted on the way out whatever happened; (path, display name)."""
    handle, temporary = tempfile.mkstemp(prefix="actionmoe-upload-", dir=upload_dir)
    path = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as out:
            name = await _receive(request, out, limit)
        named = path.with_name(path.name + safe_suffix(name))  # the decoders look at the suffix
        os.replace(path, named)
        path = named
        yield path, Path(name.replace("\\", "/")).name or "upload"
    finally:
        path.unlink(missing_ok=True)


async def _receive(request, out, limit: int) -> str:
    """Copy a multipart ``file`` field or the raw body into ``out``, counting bytes; the client's file name."""
    content_type = request.headers.get("content-type", "")
    written = 0
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise _RefusedError(400, "send the video in a multipart field named 'file' (or as the raw body)")
        while chunk := await upload.read(CHUNK_BYTES):
            written = _write_limited(out, chunk, written, limit)
        name = upload.filename or "upload"
    else:
        async for chunk in request.stream():
            written = _write_limited(out, chunk, written, limit)
        name = request.headers.get("x-filename") or "upload"
    if written == 0:
        raise _RefusedError(400, "the upload is empty: send a video file")
    from urllib.parse import unquote

    return unquote(name)


def _write_limited(out, chunk: bytes, written: int, limit: int) -> int:
    written += len(chunk)
    if written > limit:
        raise _RefusedError(413, f"video too large (over {limit} bytes)")
    out.write(chunk)
    return written


def serve(
    predictor: Predictor,
    host: str = "127.0.0.1",
    port: int = 8000,
    top_k: int = 5,
    limits: ServiceLimits = ServiceLimits(),
) -> None:
    """Serve ``predictor`` with uvicorn until Ctrl-C.

    Raises:
        UsageError: a port outside 1-65535, a top-k below 1, or the web extra missing.
        ActionMoEError: the address cannot be bound (port in use, unknown host).
    """
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {port}")
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}")
    try:
        import uvicorn
    except ImportError:
        raise UsageError("serve needs FastAPI and uvicorn: pip install 'actionmoe[web]'") from None
    _check_bindable(host, port)
    app = create_app(predictor, top_k, limits)
    print(f"serving {predictor.source} at http://{host}:{port}/ (API docs at /docs; Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", backlog=2048)


def _check_bindable(host: str, port: int) -> None:
    """Fail in one line before uvicorn would log and exit on its own."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ActionMoEError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host"
        ) from exc
