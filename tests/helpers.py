"""Helpers the tests share: tiny configs, command lines, the loopback HTTP server's state and handler."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
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


# No augmentation or dropout: on the tiny dataset's 17 training clips the model fits them within a few epochs.
EASY = [
    "train.epochs=12",
    "model.feature_dropout=0.0",
    "model.expert_dropout=0.0",
    "data.train_sampling=uniform",
    "data.resize=[32,32]",
    "data.crop_size=32",
    "train.scheduler=plateau",
    "train.lr=0.0005",
]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def run(capsys, *argv) -> tuple[int, str, str]:
    """``actionmoe ARGV`` in this process: (exit code, stdout, stderr)."""
    from actionmoe.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> bool:
    """``err`` is exactly one ``actionmoe: error:`` line, no traceback."""
    return err.count("\n") == 1 and err.startswith("actionmoe: error: ") and "Traceback" not in err


def extract_argv(root: Path, archives: Path) -> list[str]:
    """``data download`` of local synthetic archives, checked against the checksum file beside them."""
    return [
        "data",
        "download",
        "hmdb51",
        "--root",
        str(root),
        "--archives",
        str(archives),
        "--checksums",
        str(archives / "checksums.md5"),
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


@dataclass
class HubServer:
    """A loopback stand-in for the Hugging Face Hub, answering what ``snapshot_download`` asks of a dataset.

    Endpoints emulated (huggingface_hub 2.4, the version requirements/lock.txt pins):

    - ``GET /api/datasets/{repo}/revision/{revision}``: repository info, ``sha`` and ``siblings``;
    - ``GET /api/datasets/{repo}/tree/{sha}?recursive=true``: the file listing (paths and sizes);
    - ``HEAD`` and ``GET /datasets/{repo}/resolve/{sha}/{path}``: file metadata (ETag, X-Repo-Commit,
      Content-Length) and bytes, with Range requests answered by 206.

    An unknown repository or file is a 404. ``cut_once`` paths drop the connection half-way once.
    Every request is logged as (method, path, Range header, Authorization header).
    """

    url: str = ""
    repo_id: str = "test/hmdb51-tiny"
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    malformed: str | None = None  # "dotdot" listing, "proxy" page or "list" as the revision answer

    def downloads(self, name: str) -> list[str | None]:
        """The Range header of every GET of file ``name``."""
        return [r[2] for r in self.requests if r[0] == "GET" and r[1].endswith(f"/resolve/{self.sha}/{name}")]


def hub_handler(hub: HubServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range"), self.headers.get("Authorization")))
            api, files = f"/api/datasets/{hub.repo_id}/", f"/datasets/{hub.repo_id}/resolve/"
            if path.startswith(api + "revision/") and hub.malformed in ("proxy", "list"):
                self._malformed_revision()
            elif path.startswith(api + "revision/"):
                names = [*hub.files, *(["Videos/../../escape.avi"] if hub.malformed == "dotdot" else [])]
                self._json({"id": hub.repo_id, "sha": hub.sha, "siblings": [{"rfilename": f} for f in names]})
            elif path.startswith(api + "tree/"):
                listing = [
                    {"type": "file", "path": name, "size": len(body), "oid": hashlib.sha1(body).hexdigest()}
                    for name, body in sorted(hub.files.items())
                ]
                if hub.malformed == "dotdot":
                    listing.append({"type": "file", "path": "Videos/../../escape.avi", "size": 3, "oid": "0" * 40})
                self._json(listing)
            elif path.startswith(files) and path[len(files) :].partition("/")[2] in hub.files:
                self._file(path[len(files) :].partition("/")[2])
            else:
                self._json({"error": f"{path} not found"}, 404)

        def _malformed_revision(self) -> None:
            if hub.malformed == "list":
                self._json([{"id": hub.repo_id}])
                return
            body = b"<html><body>Proxy authentication required</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, value, status: int = 200) -> None:
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _file(self, name: str) -> None:
            body = hub.files[name]
            range_header = self.headers.get("Range")
            start = int(range_header.removeprefix("bytes=").split("-")[0]) if range_header else 0
            self.send_response(206 if range_header else 200)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
            self.send_header("X-Repo-Commit", hub.sha)
            if range_header:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            if self.command == "HEAD":
                return
            if name in hub.cut_once:
                hub.cut_once.discard(name)
                self.wfile.write(body[start : start + (len(body) - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body[start:])

    return Handler


def hub_files_from_dataset(root: Path) -> dict[str, bytes]:
    """An extracted HMDB51-layout root as Hub files: ``Videos/<class>/<video>`` and ``metadata_split{N}.jsonl``."""
    from actionmoe.data.splits import find_hmdb51_split_dir, hmdb51_class_names, parse_hmdb51_split_file

    split_dir = find_hmdb51_split_dir(root)
    files = {f"Videos/{p.parent.name}/{p.name}": p.read_bytes() for p in sorted((root / "videos").glob("*/*"))}
    for split in (1, 2, 3):
        lines = []
        for name in hmdb51_class_names(split_dir):
            for video, subset in parse_hmdb51_split_file(split_dir / f"{name}_test_split{split}.txt"):
                code = {"train": 1, "test": 2, None: 0}[subset]
                lines.append(json.dumps({"video_path": f"Videos/{name}/{video}", "label": name, "subset": code}))
        files[f"metadata_split{split}.jsonl"] = ("\n".join(lines) + "\n").encode()
    files["webdataset/train-000.tar"] = b"shards are not fetched"
    return files


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ModelHub:
    """A loopback stand-in for the Hub's model repositories: what ``create_repo``, ``create_commit``,
    ``list_repo_files`` and ``snapshot_download`` ask of it (huggingface_hub 2.4).

    - ``POST /api/repos/create``: 200 with the URL, 409 when it exists; 401 without a token;
    - ``POST /api/validate-yaml``: the model card's metadata block;
    - ``POST /api/models/{repo}/preupload/{rev}``: every file ``regular`` (sent inline in the commit);
    - ``POST /api/models/{repo}/commit/{rev}``: the NDJSON commit; all its files land at once under a new sha;
    - ``GET /api/models/{repo}/revision/{rev}``, ``/tree/{rev}``, ``GET``/``HEAD /{repo}/resolve/{sha}/{path}``.
    """

    url: str = ""
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo id -> files of its main revision
    shas: dict[str, str] = field(default_factory=dict)
    commits: list[tuple[str, list[str]]] = field(default_factory=list)  # (repo, paths) per commit
    revisions: list[str] = field(default_factory=list)  # the revision each commit went to
    created: list[dict] = field(default_factory=list)  # the create_repo payloads (name, visibility...)
    requests: list[tuple[str, str]] = field(default_factory=list)


def model_hub_handler(hub: ModelHub):
    import base64

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _json(self, value, status: int = 200) -> None:
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status >= 400:
                self.send_header("X-Error-Message", value.get("error", "error"))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_POST(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            hub.requests.append((self.command, path))
            body = self._body()
            if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                self._json({"error": "Invalid username or password."}, 401)
            elif path == "/api/repos/create":
                payload = json.loads(body)
                hub.created.append(payload)
                repo = f"{payload['organization']}/{payload['name']}"
                if repo in hub.repos:
                    self._json({"error": "You already created this model repo", "url": f"{hub.url}/{repo}"}, 409)
                    return
                hub.repos[repo], hub.shas[repo] = {}, "0" * 40
                self._json({"url": f"{hub.url}/{repo}", "name": repo})
            elif path == "/api/validate-yaml":  # the model card's metadata block: must be there to be checked
                card = json.loads(body).get("content", "")
                errors = [] if card.startswith("---\n") else [{"message": "no YAML metadata block"}]
                self._json({"errors": errors, "warnings": []}, 400 if errors else 200)
            elif "/preupload/" in path:
                files = json.loads(body)["files"]
                self._json(
                    {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                )
            elif "/commit/" in path:
                repo, _, revision = path.removeprefix("/api/models/").partition("/commit/")
                hub.revisions.append(revision)
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                added = {
                    line["value"]["path"]: base64.b64decode(line["value"]["content"])
                    for line in lines
                    if line["key"] == "file"
                }
                hub.repos[repo] = {**hub.repos.get(repo, {}), **added}  # all of it at once
                hub.shas[repo] = hashlib.sha1(repr(sorted(hub.repos[repo].items())).encode()).hexdigest()
                hub.commits.append((repo, sorted(added)))
                self._json({"commitUrl": f"{hub.url}/{repo}/commit/{hub.shas[repo]}", "commitOid": hub.shas[repo]})
            else:
                self._json({"error": f"{path} not found"}, 404)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            hub.requests.append((self.command, path))
            for repo, files in hub.repos.items():
                api = f"/api/models/{repo}/"
                if path.startswith(api + "revision/"):
                    siblings = [{"rfilename": name} for name in files]
                    self._json({"id": repo, "sha": hub.shas[repo], "siblings": siblings})
                    return
                if path.startswith(api + "tree/"):
                    self._json([{"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                for n, b in sorted(files.items())])  # fmt: skip
                    return
                resolve = f"/{repo}/resolve/"
                if path.startswith(resolve) and path[len(resolve) :].partition("/")[2] in files:
                    body = files[path[len(resolve) :].partition("/")[2]]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
                    self.send_header("X-Repo-Commit", hub.shas[repo])
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return
            self._json({"error": "Repository not found"}, 404)

    return Handler


@contextlib.contextmanager
def serving(handler) -> Iterator[str]:
    """A threaded HTTP server of ``handler`` on a free loopback port while the block runs; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
