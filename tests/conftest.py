"""Shared fixtures: the real reference data beside the project, tiny synthetic archives, a loopback HTTP server."""

from __future__ import annotations

import http.server
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from actionmoe.config import SynthConfig
from actionmoe.data.synthetic import write_synthetic_hmdb51

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real HMDB51 split files and real videos)."""
    path = Path(os.environ.get("ACTIONMOE_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path}")
    return path


TINY_SYNTH = SynthConfig(classes=3, videos_per_class=5, frames=8, width=48, height=32, seed=1)


@pytest.fixture(scope="session")
def tiny_archives(tmp_path_factory) -> Path:
    """A folder with a tiny synthetic ``hmdb51_org.rar``, ``test_train_splits.rar`` and ``checksums.md5``."""
    out = tmp_path_factory.mktemp("archives")
    write_synthetic_hmdb51(out, TINY_SYNTH)
    return out


@dataclass
class LoopbackServer:
    """Serves ``files`` (URL path -> bytes) with Range support; paths in ``cut_once`` drop mid-body once."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)


def _handler(server_state: LoopbackServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = server_state.files.get(self.path)
            range_header = self.headers.get("Range")
            if body is None:
                server_state.requests.append((self.path, range_header, 404))
                self.send_error(404)
                return
            start = int(range_header.removeprefix("bytes=").split("-")[0]) if range_header else 0
            status = 206 if range_header else 200
            server_state.requests.append((self.path, range_header, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) - start))
            if range_header:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            if self.path in server_state.cut_once:
                server_state.cut_once.discard(self.path)
                self.wfile.write(body[start : start + (len(body) - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body[start:])

    return Handler


@pytest.fixture
def http_server():
    state = LoopbackServer(url="")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
