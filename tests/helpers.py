"""Helpers the tests share: tiny configs, command lines, the loopback HTTP server's state and handler."""

from __future__ import annotations

import http.server
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from actionmoe.config import SynthConfig, load_config

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # real videos and public HMDB51 split lists (see fixtures/README.md)
PACKAGED_SPLITS = REPO / "src" / "actionmoe" / "data" / "hmdb51_splits"


TINY_SYNTH = SynthConfig(classes=3, videos_per_class=5, frames=8, width=48, height=32, seed=1)


@dataclass
class LoopbackServer:
    """Serves ``files`` (URL path -> bytes) with Range support, and misbehaves on request.

    ``cut_once``: drop the connection half-way through the body, once. ``etags``: an ETag header
    per path. ``wrong_range``: answer a Range request with a 206 whose Content-Range starts at 0
    (and send the whole body). ``trickle``: send the body one byte at a time, ``trickle_delay_s``
    apart. Every request is logged as (path, Range header, status).
    """

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)
    etags: dict[str, str] = field(default_factory=dict)
    wrong_range: set[str] = field(default_factory=set)
    trickle: set[str] = field(default_factory=set)
    trickle_delay_s: float = 0.05
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)


def loopback_handler(server_state: LoopbackServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            body = server_state.files.get(self.path)
            range_header = self.headers.get("Range")
            if body is None:
                server_state.requests.append((self.path, range_header, 404))
                self.send_error(404)
                return
            start = int(range_header.removeprefix("bytes=").split("-")[0]) if range_header else 0
            if self.path in server_state.wrong_range:
                start = 0
            status = 206 if range_header else 200
            server_state.requests.append((self.path, range_header, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) - start))
            if self.path in server_state.etags:
                self.send_header("ETag", server_state.etags[self.path])
            if range_header:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            self._body(body[start:])

        def _body(self, payload: bytes) -> None:
            if self.path in server_state.cut_once:
                server_state.cut_once.discard(self.path)
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if self.path in server_state.trickle:
                for index in range(min(len(payload), 400)):  # bounded: the client gives up long before
                    self.wfile.write(payload[index : index + 1])
                    self.wfile.flush()
                    time.sleep(server_state.trickle_delay_s)
                self.close_connection = True
                return
            self.wfile.write(payload)

    return Handler


TINY = [
    "data.clip_len=8",
    "data.resize=[32,40]",
    "data.crop_size=24",
    "data.presample_frames=8",
    "data.flip=false",
    "data.num_workers=0",
    "data.val_fraction=0.2",
    "model.layer4_temporal_stride=false",
    "model.expert_hidden=32",
    "model.gate_hidden=16",
    'model.motion_taps=["layer4"]',
    "train.batch_size=4",
    "train.lr=0.0005",
    "train.backbone_lr_scale=1.0",
    "train.scheduler=cosine",
    "train.warmup_epochs=0",
]


def tiny_config(root: Path, *extra: str):
    return load_config(None, [f"data.root={root}", *TINY, *extra])


def cli_args(root: Path, out: Path, *extra: str) -> list[str]:
    args = ["train", "--config", "demo", "--root", str(root), "--out", str(out)]
    for item in [*TINY, *extra]:
        args += ["--set", item]
    return args


def epochs_logged(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
