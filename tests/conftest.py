"""Shared fixtures: the real reference data beside the project, tiny synthetic archives, a loopback HTTP server."""

from __future__ import annotations

import http.server
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from actionmoe.config import SynthConfig, load_config
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


TINY = [
    "data.clip_len=8", "data.resize=[32,40]", "data.crop_size=24", "data.presample_frames=8", "data.flip=false",
    "data.num_workers=0", "data.val_fraction=0.2", "model.layer4_temporal_stride=false", "model.expert_hidden=32",
    "model.gate_hidden=16", "model.motion_taps=[\"layer4\"]", "train.batch_size=4", "train.lr=0.0005",
    "train.backbone_lr_scale=1.0", "train.scheduler=cosine", "train.warmup_epochs=0",
]


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory) -> Path:
    """3 motion classes x 10 videos, extracted through the real acquisition path."""
    archives = tmp_path_factory.mktemp("train_archives")
    write_synthetic_hmdb51(archives, SynthConfig(classes=3, videos_per_class=10, frames=12, width=48, height=40))
    root = archives.parent / "train_dataset"
    from actionmoe.cli import main

    assert main(["data", "download", "hmdb51", "--root", str(root), "--archives", str(archives),
                 "--checksums", str(archives / "checksums.md5")]) == 0
    return root


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


@pytest.fixture(scope="session")
def trained_run(dataset_root, tmp_path_factory) -> Path:
    """A two-epoch run of the tiny config trained through the CLI (which also evaluates it)."""
    from actionmoe.cli import main

    run_dir = tmp_path_factory.mktemp("trained") / "hmdb51-split1"
    assert main(cli_args(dataset_root, run_dir, "train.epochs=2")) == 0
    return run_dir
