"""``actionmoe serve``: the upload page and a JSON API around a Predictor, on FastAPI + uvicorn.

    GET  /               the upload page (drag and drop, a preview, ranked actions as bars, a timeline)
    GET  /api/info       {"classes": [...], "checkpoint": ...}
    GET  /healthz        {"status": "ok"}
    POST /api/predict    a multipart upload (field ``file``) or the video as the raw body;
                         query ``top_k``, ``min_confidence`` (answer "unknown" unless the top
                         probability is above it), and ``window`` / ``stride`` for a timeline
    POST /api/explain    the same upload; Grad-CAM of where the model looked (``predict.explain``): the
                         class, its probability, the gates, and the frame strip as a PNG data URL;
                         query ``class_name`` (default the predicted class), ``per_expert``
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
import math
import os
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from actionmoe.data.decode import video_duration
from actionmoe.errors import ActionMoEError, PredictionStoppedError, UsageError, VideoDecodeError
from actionmoe.files import safe_suffix
from actionmoe.predict.predictor import Predictor

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
CHUNK_BYTES = 1 << 20
POLL_S = 0.2  # how often a waiting request looks at its client and its time limit


@dataclass(frozen=True)
class ServiceLimits:
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    workers: int = 1  # predictions running at once
    queue: int = 32  # complete uploads waiting for a worker; more are refused with 503
    timeout_s: float = 300.0  # one prediction's running time limit
    read_idle_s: float = 30.0  # an upload silent this long is refused (408)
    min_upload_bytes_per_s: float = 32_768.0  # slower than this on average after the grace period: 408
    upload_grace_s: float = 10.0


class _RefusedError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class Admission:
    """At most ``workers`` predictions run and ``queue`` complete uploads wait; the rest get 503 at once.

    A slot is taken only once an upload is complete, so slow clients cannot hold one. The
    measured service and wait times give the queue's statistics and the 503's Retry-After.
    Thread-safe: FastAPI's test client and uvicorn run handlers on different event loops.
    """

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self._lock = threading.Lock()
        self.admitted = self.running = self.served = 0
        self.service_s_total = self.wait_s_total = 0.0

    def admit(self) -> None:
        with self._lock:
            if self.admitted >= self.capacity:
                raise _RefusedError(
                    503,
                    "busy: every prediction slot and queue place is taken; retry shortly",
                    {"Retry-After": str(self.retry_after_s())},
                )
            self.admitted += 1

    def started(self, waited_s: float) -> None:
        with self._lock:
            self.running += 1
            self.wait_s_total += waited_s

    def finished(self, ran: bool, service_s: float) -> None:
        with self._lock:
            self.admitted -= 1
            if ran:
                self.running -= 1
                self.served += 1
                self.service_s_total += service_s

    def retry_after_s(self) -> int:
        mean = self.service_s_total / self.served if self.served else 2.0
        return max(1, math.ceil(mean * self.capacity / self.workers))

    def snapshot(self) -> dict:
        with self._lock:
            served = max(1, self.served)
            return {
                "workers": self.workers,
                "capacity": self.capacity,
                "running": self.running,
                "waiting": self.admitted - self.running,
                "served": self.served,
                "mean_service_s": round(self.service_s_total / served, 4),
                "mean_wait_s": round(self.wait_s_total / served, 4),
            }


UPLOAD_BODY = {
    "required": True,
    "description": "The video: a multipart field named `file`, or the raw bytes (name it with `X-Filename`).",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
ERROR_STATUSES = {
    400: "a bad parameter (top_k, window, stride), an empty upload or a multipart form without `file`",
    408: "the upload stalled or was slower than the minimum rate",
    413: "the video is larger than the server's limit",
    415: "a body that cannot be a video (JSON or text): send multipart/form-data or application/octet-stream",
    422: "the file is not a video the server can decode",
    503: "the queue is full or the server is stopping; retry after the Retry-After header's seconds",
    504: "the prediction took longer than the server's time limit",
}


def _error_responses() -> dict:
    from pydantic import BaseModel

    class ErrorBody(BaseModel):
        error: str  # one line saying what went wrong and what to do

    return {status: {"model": ErrorBody, "description": text} for status, text in ERROR_STATUSES.items()}


def _add_offline_docs(app) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from the assets the ``fastapi_offline`` distribution packages.

    FastAPI's self-hosted docs recipe: the pages load nothing from outside the server, so they
    work offline, on a cluster node or behind a firewall.
    """
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = resources.files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")
    no_icon = "data:,"  # the default favicon comes from FastAPI's website

    @app.get("/docs", include_in_schema=False)
    def swagger():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="actionmoe API",
            swagger_js_url="docs-assets/swagger-ui-bundle.js",
            swagger_css_url="docs-assets/swagger-ui.css",
            swagger_favicon_url=no_icon,
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title="actionmoe API",
            redoc_js_url="docs-assets/redoc.standalone.js",
            redoc_favicon_url=no_icon,
            with_google_fonts=False,
        )


def create_app(
    predictor: Predictor, top_k: int = 5, limits: ServiceLimits = ServiceLimits(), upload_dir: Path | None = None
):
    """The FastAPI application serving ``predictor``.

    Uploads go to ``upload_dir``, or to a private folder in the system's temporary folder; when the
    application shuts down, uploads still there are removed (and the private folder), so no upload
    outlives the server.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    executor = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="predict")
    admission = Admission(limits.workers, limits.queue)
    stopping = threading.Event()
    folder = upload_dir or Path(tempfile.mkdtemp(prefix="actionmoe-serve-"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            stopping.set()  # running predictions stop at their next window or batch
            executor.shutdown(wait=False, cancel_futures=True)
            for leftover in folder.glob("actionmoe-upload-*"):
                leftover.unlink(missing_ok=True)
            if upload_dir is None:
                shutil.rmtree(folder, ignore_errors=True)

    ERROR_RESPONSES = _error_responses()  # noqa: N806 (built here: pydantic is imported with FastAPI)
    app = FastAPI(
        title="actionmoe",
        description="Ranked actions in uploaded videos.",
        lifespan=lifespan,
        docs_url=None,  # served below from packaged assets: the default loads them from a CDN
        redoc_url=None,
    )
    page = (resources.files("actionmoe.web") / "page.html").read_text()
    _add_offline_docs(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/info")
    def info() -> dict:
        """Classes, the checkpoint, and the queue: running, waiting, served, mean service and wait times."""
        return {"classes": list(predictor.classes), "checkpoint": predictor.source.name, "queue": admission.snapshot()}

    @app.post("/api/predict", openapi_extra={"requestBody": UPLOAD_BODY}, responses=ERROR_RESPONSES)
    async def predict(
        request: Request,
        top_k: int = top_k,
        window: str | None = None,
        stride: str = "1.0",
        timeline: bool = False,
        min_confidence: float | None = None,
    ):
        """A multipart upload (field ``file``) or the raw body.

        ``window``/``stride`` (seconds, or ``48f`` frames): the timeline alone. ``timeline=true``: the
        ranking of the whole video and, when it is longer than two windows (of ``window``, default
        2 s), its timeline under ``"timeline"`` (null for a short video), from one upload.
        ``min_confidence`` (0-1; default the service's ``--min-confidence``): ``"answer"`` is ``"unknown"``
        unless the top probability is above it, and so are such timeline windows.
        """
        service = _Service(predictor, limits, executor, admission, stopping, folder)
        threshold = predictor.min_confidence if min_confidence is None else min_confidence
        job = _Request(top_k, window, stride, timeline, threshold)
        try:
            return await service.handle(request, job)
        except _RefusedError as refused:
            return JSONResponse({"error": refused.message}, refused.status, headers=refused.headers)

    @app.post("/api/explain", openapi_extra={"requestBody": UPLOAD_BODY}, responses=ERROR_RESPONSES)
    async def explain(request: Request, class_name: str | None = None, per_expert: bool = False):
        """Grad-CAM of the upload: ``class``, ``score``, ``gates`` and ``strip`` (a ``data:image/png;base64`` URL:
        one row of frames per map, the model's first, then with ``per_expert`` the shared and each routed expert).
        """
        service = _Service(predictor, limits, executor, admission, stopping, folder)
        job = _Request(top_k, None, "1.0", False, predictor.min_confidence, explain=True, class_name=class_name)
        try:
            return await service.handle(request, replace(job, per_expert=per_expert))
        except _RefusedError as refused:
            return JSONResponse({"error": refused.message}, refused.status, headers=refused.headers)

    return app


@dataclass(frozen=True)
class _Request:
    """What one POST /api/predict asks for."""

    top_k: int
    window: str | None  # a timeline of these windows alone
    stride: str
    timeline: bool  # the ranking, plus a timeline when the video is longer than two windows
    min_confidence: float = 0.0  # the answer is "unknown" unless the top probability is above it
    explain: bool = False  # Grad-CAM instead of the ranking
    class_name: str | None = None  # the class to explain (None: the predicted one)
    per_expert: bool = False


class _Service:
    """One request: receive the upload under time limits, then wait for a worker, then predict."""

    def __init__(self, predictor, limits, executor, admission, stopping, folder) -> None:
        self.predictor = predictor
        self.limits = limits
        self.executor = executor
        self.admission = admission
        self.stopping = stopping
        self.folder = folder

    async def handle(self, request, job: _Request) -> dict:
        if job.top_k < 1:
            raise _RefusedError(400, f"top_k must be at least 1, got {job.top_k}")
        if not 0.0 <= job.min_confidence <= 1.0:
            raise _RefusedError(400, f"min_confidence must be between 0 and 1, got {job.min_confidence}")
        if job.explain:
            from actionmoe.predict.explain import check_explainable

            try:
                check_explainable(self.predictor, job.class_name)
            except UsageError as exc:
                raise _RefusedError(400, str(exc).replace("--class", "class_name")) from None
        declared = int(request.headers.get("content-length") or 0)
        if declared > self.limits.max_upload_bytes + 64 * 1024:  # a multipart envelope adds a little
            raise _RefusedError(413, f"video too large ({declared} bytes; limit {self.limits.max_upload_bytes})")
        guarded = type(request)(request.scope, _guarded_receive(request.receive, self.limits))
        async with _spooled_upload(guarded, self.limits.max_upload_bytes, self.folder) as (path, name):
            self.admission.admit()
            try:
                return await self._run(request, _job(self.predictor, path, name, job))
            except VideoDecodeError as exc:
                raise _RefusedError(422, str(exc).replace(str(path), name)) from None
            except UsageError as exc:
                raise _RefusedError(400, str(exc)) from None

    async def _run(self, request, job) -> dict:
        """Wait for the job's worker, watching the client and the time limit; a job told to stop stops."""
        cancel = threading.Event()
        state = {"started": None}
        submitted = time.monotonic()

        def work() -> dict:
            state["started"] = time.monotonic()
            self.admission.started(state["started"] - submitted)
            try:
                if cancel.is_set() or self.stopping.is_set():
                    raise PredictionStoppedError
                return job(lambda: cancel.is_set() or self.stopping.is_set())
            finally:
                self.admission.finished(True, time.monotonic() - state["started"])

        submitted_job = self.executor.submit(work)
        future = asyncio.wrap_future(submitted_job)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=POLL_S)
                if done:
                    return future.result()
                if await request.is_disconnected():
                    cancel.set()
                    raise _RefusedError(499, "the client left; the prediction was stopped")
                started = state["started"]
                if started is not None and time.monotonic() - started > self.limits.timeout_s:
                    cancel.set()
                    raise _RefusedError(504, f"the prediction took longer than {self.limits.timeout_s:g} s")
        except PredictionStoppedError:
            raise _RefusedError(503, "the server is stopping; retry shortly", {"Retry-After": "5"}) from None
        finally:
            cancel.set()
            if submitted_job.cancel():  # never reached a worker (False once running): its slot is free again
                self.admission.finished(False, 0.0)


def _guarded_receive(receive, limits: ServiceLimits):
    """``receive`` that refuses (408) an upload silent for ``read_idle_s`` or slower than the minimum rate."""
    started = time.monotonic()
    received = 0

    async def guarded():
        nonlocal received
        try:
            message = await asyncio.wait_for(receive(), limits.read_idle_s)
        except TimeoutError:
            raise _RefusedError(408, f"the upload stalled (nothing for {limits.read_idle_s:g} s)") from None
        received += len(message.get("body", b""))
        elapsed = time.monotonic() - started
        too_slow = received < limits.min_upload_bytes_per_s * elapsed
        if message.get("more_body") and elapsed > limits.upload_grace_s and too_slow:
            raise _RefusedError(
                408, f"the upload is too slow ({received / elapsed:.0f} bytes/s); send it faster or smaller"
            )
        return message

    return guarded


AUTO_WINDOW_S = 2.0
AUTO_STRIDE_S = 1.0


def _job(predictor: Predictor, path: Path, name: str, job: _Request):
    from actionmoe.predict.timeline import parse_span, predict_timeline

    def timeline_of(window: str, stride: str, should_stop):
        timeline = predict_timeline(predictor, path, window, stride, job.top_k, should_stop=should_stop)
        return replace(timeline, min_confidence=job.min_confidence)

    def run(should_stop) -> dict:
        if job.explain:
            return {"video": name, **_explanation(predictor, path, job)}
        if job.window is not None and not job.timeline:
            return {"video": name, **timeline_of(job.window, job.stride, should_stop).to_json(), "path": name}
        ranked = replace(predictor.predict(path, job.top_k), min_confidence=job.min_confidence)
        result = {"video": name, **ranked.to_json(), "path": name}
        if not job.timeline:
            return result
        window = job.window or str(AUTO_WINDOW_S)
        stride = job.stride if job.window else str(AUTO_STRIDE_S)
        value, unit = parse_span(window, "window")
        duration = video_duration(path)  # 0.0 when the header does not say
        if unit == "seconds" and 0 < duration <= 2 * value:
            return {**result, "timeline": None}  # not longer than two windows
        timeline = timeline_of(window, stride, should_stop)
        return {**result, "timeline": timeline.to_json() if len(timeline.windows) > 2 else None}

    return run


def _explanation(predictor: Predictor, path: Path, job: _Request) -> dict:
    """Grad-CAM of the uploaded file; the strip is written beside the upload, read back and deleted."""
    import base64

    from actionmoe.predict.explain import explain, save_strip

    result = explain(predictor, path, job.class_name, job.per_expert)
    strip = path.with_name(path.name + ".gradcam.png")  # named like the upload: swept with it at shutdown
    try:
        png = save_strip(result, strip).read_bytes()
    finally:
        strip.unlink(missing_ok=True)
    return {
        "class": result.class_name,
        "score": result.score,
        "gates": result.gates,
        "maps": list(result.maps),
        "strip": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
    }


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
    if content_type.startswith(("application/json", "text/")):
        raise _RefusedError(
            415,
            f"a {content_type.split(';')[0]} body is not a video: send multipart/form-data (field 'file') "
            "or application/octet-stream",
        )
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
    check_limits(limits)
    try:
        import uvicorn
    except ImportError:
        raise UsageError("serve needs FastAPI and uvicorn: pip install 'actionmoe[web]'") from None
    _check_bindable(host, port)
    app = create_app(predictor, top_k, limits)
    print(f"serving {predictor.source} at http://{host}:{port}/ (API docs at /docs; Ctrl-C to stop)", flush=True)
    # SIGTERM (docker stop, systemd): uvicorn stops accepting, the lifespan tells running
    # predictions to stop and removes pending uploads; open connections get 5 s to finish
    uvicorn.run(app, host=host, port=port, log_level="warning", backlog=2048, timeout_graceful_shutdown=5)


def check_limits(limits: ServiceLimits) -> None:
    """Refuse limits that cannot work (before the model is loaded).

    Raises:
        UsageError: a worker count or upload size below 1, a negative queue, a time limit that is
            not a positive finite number.
    """
    if limits.workers < 1 or limits.max_upload_bytes < 1 or limits.queue < 0:
        raise UsageError("--workers and --max-upload-mb must be at least 1, --queue 0 or more")
    if not (math.isfinite(limits.timeout_s) and limits.timeout_s > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, got {limits.timeout_s}")


def _check_bindable(host: str, port: int) -> None:
    """Fail in one line before uvicorn would log and exit on its own."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ActionMoEError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host"
        ) from exc
