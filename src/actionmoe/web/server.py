"""``actionmoe serve``: an upload page and a JSON API around a Predictor.

    GET  /              the upload page
    GET  /api/info      {"classes": [...], "checkpoint": ...}
    POST /api/predict   body = the video file's bytes -> {"predictions": [{"label", "score"}, ...]}

Uploads go to a temporary file that is deleted after the prediction; a body over
``max_upload_bytes`` is refused with 413, an undecodable video with 422 and a one-line reason.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import tempfile
import threading
import urllib.parse
from importlib import resources
from pathlib import Path

from actionmoe.errors import ActionMoEError, UsageError, VideoDecodeError
from actionmoe.inference import Predictor

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 512 * 1024 * 1024


def serve(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000, top_k: int = 5) -> None:
    """Serve ``predictor`` until Ctrl-C.

    Raises:
        UsageError: a port outside 1-65535 or a top-k below 1.
        ActionMoEError: the address cannot be bound (port in use, unknown host).
    """
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {port}")
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}")
    try:
        server = PredictionServer((host, port), predictor, top_k)
    except OSError as exc:
        raise ActionMoEError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host"
        ) from exc
    print(f"serving {predictor.source} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class PredictionServer(http.server.ThreadingHTTPServer):
    """Serves one Predictor; predictions run one at a time (the model is not re-entrant on every device)."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], predictor: Predictor, top_k: int = 5, max_upload_bytes: int = MAX_UPLOAD_BYTES
    ) -> None:
        super().__init__(address, PredictionHandler)
        self.predictor, self.top_k, self.max_upload_bytes = predictor, top_k, max_upload_bytes
        self.lock = threading.Lock()
        self.page = (resources.files("actionmoe.web") / "page.html").read_bytes()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class PredictionHandler(http.server.BaseHTTPRequestHandler):
    server: PredictionServer

    def log_message(self, format: str, *args) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        if self.path in ("/", "/index.html"):
            self._send(200, self.server.page, "text/html; charset=utf-8")
        elif self.path == "/api/info":
            predictor = self.server.predictor
            self._send_json(200, {"classes": list(predictor.classes), "checkpoint": predictor.source.name})
        else:
            self._send_json(404, {"error": f"no such page: {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/api/predict":
            self._send_json(404, {"error": f"no such endpoint: {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            self._send_json(400, {"error": "send the video file as the request body"})
            return
        if length > self.server.max_upload_bytes:
            self._send_json(413, {"error": f"video too large ({length} bytes; limit {self.server.max_upload_bytes})"})
            return
        name = urllib.parse.unquote(self.headers.get("X-Filename") or "upload.bin")
        self._predict_upload(self.rfile.read(length), name)

    def _predict_upload(self, data: bytes, name: str) -> None:
        suffix = Path(name).suffix[:8] if Path(name).suffix else ".bin"
        handle, temporary = tempfile.mkstemp(prefix="actionmoe-upload-", suffix=suffix)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            with self.server.lock:
                predictions = self.server.predictor.predict(temporary, self.server.top_k).predictions
        except VideoDecodeError as exc:
            message = str(exc).replace(temporary, name)
            self._send_json(422, {"error": message})
            return
        finally:
            Path(temporary).unlink(missing_ok=True)
        self._send_json(200, {"video": name, "predictions": [p.__dict__ for p in predictions]})

    def _send_json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
