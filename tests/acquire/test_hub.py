"""HMDB51 from the Hugging Face Hub copy, against a loopback Hub, and its metadata-JSONL layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actionmoe.acquire.hub import DEFAULT_REPO, HubSource, parse_hub_source
from actionmoe.cli import main
from actionmoe.data.splits import SplitOptions, builtin_hmdb51_split_dir, hmdb51_class_names, load_splits
from actionmoe.errors import DatasetError, UsageError
from tests.helpers import FIXTURES, HubServer, cli_args, hub_files_from_dataset, hub_handler, serving


@pytest.fixture
def hub(dataset_root):
    state = HubServer(files=hub_files_from_dataset(dataset_root))
    with serving(hub_handler(state)) as state.url:
        yield state


def hub_env(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": "hf_loopback_token",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "PYTHONWARNINGS": "ignore",
    }


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The command's own error lines (stderr also carries the library's progress bars and log lines)."""
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("actionmoe: error:")]


def download(hub: HubServer, root: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "actionmoe",
        "data",
        "download",
        "hmdb51",
        "--root",
        str(root),
        "--source",
        f"hf:{hub.repo_id}",
        *extra,
    ]
    return subprocess.run(command, env=hub_env(hub, tmp_path), capture_output=True, text=True, timeout=300)


def test_source_names():
    assert parse_hub_source("hf") == HubSource(DEFAULT_REPO, None)
    assert parse_hub_source("hf:me/hmdb") == HubSource("me/hmdb", None)
    assert parse_hub_source("hf:me/hmdb@v1.0") == HubSource("me/hmdb", "v1.0")
    for bad in ("hub", "hf:", "hf:noslash", "hf:a/b@"):
        with pytest.raises(UsageError, match="--source must be"):
            parse_hub_source(bad)


@pytest.mark.slow
def test_download_from_the_hub_then_train_through_the_normal_path(hub, dataset_root, tmp_path, capsys):
    victim = next(name for name in hub.files if name.endswith(".avi"))
    hub.cut_once.add(victim)
    root = tmp_path / "hub_root"
    result = download(hub, root, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "downloaded 3 classes from test/hmdb51-tiny" in result.stdout
    for name, body in hub.files.items():
        assert name.startswith("webdataset/") or (root / name).read_bytes() == body
    assert not (root / "webdataset").exists() and (root / ".actionmoe-hub.json").is_file()
    assert len(hub.downloads(victim)) == 2  # cut once, fetched again
    assert {r[3] for r in hub.requests} == {"Bearer hf_loopback_token"}  # HF_TOKEN honoured

    again = download(hub, root, tmp_path)
    assert again.returncode == 0 and "already complete" in again.stdout

    capsys.readouterr()
    assert main(cli_args(root, tmp_path / "run", "train.epochs=1")) == 0  # data.dataset = hmdb51 reads it in place
    assert "test split 1" in capsys.readouterr().out


def test_a_cut_connection_is_resumed_with_a_range_request(hub, tmp_path, monkeypatch):
    """In process, with the library's read size shrunk so that a cut file holds bytes to resume from."""
    from huggingface_hub import constants

    from actionmoe.acquire.hub import acquire_from_hub

    victim = max((name for name in hub.files if name.endswith(".avi")), key=lambda name: len(hub.files[name]))
    hub.cut_once.add(victim)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # what HF_ENDPOINT sets when the library is imported
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    root = tmp_path / "hub_root"
    acquire_from_hub(root, HubSource(hub.repo_id))
    ranges = hub.downloads(victim)
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1].removeprefix("bytes=").rstrip("-")) > 0
    assert (root / victim).read_bytes() == hub.files[victim]


@pytest.mark.slow
def test_an_interrupted_download_continues_where_it_stopped(hub, tmp_path):
    root = tmp_path / "hub_root"
    assert download(hub, root, tmp_path).returncode == 0
    (root / ".actionmoe-hub.json").unlink()  # as if killed before the check
    lost = next(name for name in hub.files if name.endswith(".avi"))
    (root / lost).unlink()
    hub.requests.clear()
    result = download(hub, root, tmp_path)
    assert result.returncode == 0, result.stderr
    fetched = {r[1].rpartition(f"{hub.sha}/")[2] for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]}
    assert fetched == {lost}


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, message",
    [
        ("malformed", "metadata_split2.jsonl:3: not a JSON object"),
        ("missing_video", "videos named in the split files are missing"),
        ("wrong_folder", "but the video lies in the folder"),
    ],
)
def test_bad_metadata_is_one_line_and_never_marked_complete(hub, tmp_path, damage, message):
    if damage == "malformed":
        lines = hub.files["metadata_split2.jsonl"].decode().splitlines()
        lines[2] = lines[2][:-5]
        hub.files["metadata_split2.jsonl"] = ("\n".join(lines) + "\n").encode()
    elif damage == "missing_video":
        del hub.files[next(name for name in hub.files if name.endswith(".avi"))]
    else:
        text = hub.files["metadata_split1.jsonl"].decode()
        hub.files["metadata_split1.jsonl"] = text.replace('"label": "move_up"', '"label": "move_left"', 1).encode()
    root = tmp_path / "hub_root"
    result = download(hub, root, tmp_path)
    (line,) = error_lines(result)
    assert result.returncode == 1 and message in line and "not marked complete" in line
    assert not (root / ".actionmoe-hub.json").exists()
    again = download(hub, root, tmp_path)
    assert again.returncode == 1 and "already complete" not in again.stdout
    if damage == "missing_video":
        assert download(hub, root, tmp_path, "--on-missing", "skip").returncode == 0


def test_without_huggingface_hub_one_line_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    code = main(["data", "download", "hmdb51", "--root", str(tmp_path / "r"), "--source", "hf"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'actionmoe[hub]'" in err


def test_an_unreachable_hub_is_one_line(tmp_path):
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "actionmoe",
            "data",
            "download",
            "hmdb51",
            "--root",
            str(tmp_path / "r"),
            "--source",
            "hf",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (line,) = error_lines(result)
    assert result.returncode == 1 and "could not download CVML-TueAI/HMDB51 from the Hugging Face Hub" in line


# --- the real split membership in the metadata-JSONL layout --------------------------------------------------------


def public_lists() -> dict[int, dict[str, int]]:
    """split -> {class/video.avi: 1 (train) or 2 (test)} from the public per-split lists."""
    lists = {}
    for split in (1, 2, 3):
        lists[split] = {}
        for subset, kind in ((1, "train"), (2, "val")):
            path = FIXTURES / "hmdb51" / f"hmdb51_{kind}_split_{split}_videos.txt"
            lists[split].update({line.split()[0]: subset for line in path.read_text().splitlines()})
    return lists


def real_metadata(folder: Path, flip: str | None = None) -> Path:
    """metadata_split{1,2,3}.jsonl naming the 6,371 real videos of the public lists (0 where a split does not use
    one), plus unused extra names as the Hub copy lists all 6,766; ``flip`` turns one split-2 training video to test.
    """
    lists = public_lists()
    names = sorted(set().union(*lists.values()))
    names += [
        f"{c}/unlisted_{c}_{i}.avi" for c in (FIXTURES / "hmdb51" / "classes.txt").read_text().split() for i in range(2)
    ]
    for split in (1, 2, 3):
        codes = {name: lists[split].get(name, 0) for name in names}
        if flip is not None and split == 2:
            codes[flip] = 2
        rows = [
            {"video_path": f"Videos/{name}", "label": name.split("/")[0], "subset": code}
            for name, code in codes.items()
        ]
        (folder / f"metadata_split{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_the_real_split_membership_cross_checks_clean(tmp_path):
    root = real_metadata(tmp_path)
    for split in (1, 2, 3):
        splits = load_splits("hmdb51_jsonl", root, SplitOptions(split=split, val_fraction=0.1, on_missing="skip"))
        assert splits.classes == hmdb51_class_names(builtin_hmdb51_split_dir())
        assert len(splits.missing) == 3570 + 1530  # no video files here: only the membership is checked
    names = {json.loads(line)["video_path"] for line in (root / "metadata_split1.jsonl").read_text().splitlines()}
    assert len(names) == 6371 + 2 * 51


def test_a_disagreeing_assignment_is_one_line(tmp_path, capsys):
    first = next(name for name, subset in public_lists()[2].items() if subset == 1)
    root = real_metadata(tmp_path, flip=first)
    code = main(["data", "summary", "--root", str(root), "--on-missing", "skip"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "disagree with the official HMDB51 splits in 1 places" in err and f"Videos/{first} is test" in err


@pytest.mark.parametrize("malformed", ["dotdot", "proxy", "list"])
def test_a_malformed_hub_answer_is_one_line_and_writes_nothing_outside(hub, tmp_path, malformed):
    hub.malformed = malformed
    root = tmp_path / "deep" / "hub_root"
    result = download(hub, root, tmp_path)
    (line,) = error_lines(result)
    assert result.returncode == 1 and "Hugging Face Hub" in line, result.stderr[-1500:]
    assert not (root / ".actionmoe-hub.json").exists()
    assert not list(tmp_path.rglob("escape.avi"))


def write_layout(dataset_root: Path, root: Path) -> Path:
    for name, data in hub_files_from_dataset(dataset_root).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_test_video_listed_again_with_another_spelling_is_refused(dataset_root, tmp_path):
    root = write_layout(dataset_root, tmp_path / "layout")
    metadata = root / "metadata_split1.jsonl"
    test_record = next(json.loads(line) for line in metadata.read_text().splitlines() if '"subset": 2' in line)
    again = {**test_record, "video_path": "./" + test_record["video_path"], "subset": 1}
    metadata.write_text(metadata.read_text() + json.dumps(again) + "\n")
    with pytest.raises(DatasetError, match="listed twice"):
        load_splits("hmdb51_jsonl", root, SplitOptions(split=1, val_fraction=0.2))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text.replace('"subset": 1', '"subset": [1]', 1), "subset must be"),
        (lambda text: "", "holds no records"),
    ],
)
def test_odd_metadata_files_are_one_line(capsys, dataset_root, tmp_path, edit, message):
    root = write_layout(dataset_root, tmp_path / "layout")
    for split in (1, 2, 3):
        path = root / f"metadata_split{split}.jsonl"
        path.write_text(edit(path.read_text()))
    code = main(["data", "summary", "--root", str(root), "--dataset", "hmdb51_jsonl"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err and "disagree" not in err, err
