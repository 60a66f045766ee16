"""The command line end to end: synth -> download (loopback mirror or local archives) -> extract -> summary."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actionmoe.cli import build_parser
from tests.helpers import extract_argv, one_line, run


def test_info(capsys):
    code, out, _ = run(capsys, "info", "--json")
    report = json.loads(out)
    assert code == 0 and "rars" in report["rar_extractors"] and "opencv" in report["decoders"]
    extras = {
        "web": True,
        "export": True,
        "notebook": True,
        "hub": True,
        "tensorboard": True,
        "app": True,
        "track": True,
    }
    assert report["extras"] == extras
    code, out, _ = run(capsys, "info")
    assert "extras installed: web, export, notebook, hub, tensorboard, app, track" in out


def test_download_from_loopback_mirror_then_summary(capsys, tiny_archives, http_server, tmp_path):
    for name in ("hmdb51_org.rar", "test_train_splits.rar"):
        http_server.files[f"/good/{name}"] = (tiny_archives / name).read_bytes()
    http_server.cut_once.add("/good/hmdb51_org.rar")
    root = tmp_path / "hmdb51"
    argv = [
        "data",
        "download",
        "hmdb51",
        "--root",
        str(root),
        "--mirror",
        f"{http_server.url}/dead",
        "--mirror",
        f"{http_server.url}/good",
        "--checksums",
        str(tiny_archives / "checksums.md5"),
        "--set",
        "download.backoff_s=0.01",
        "--set",
        "download.videos_members=0",
        "--set",
        "download.splits_members=0",
    ]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "extracted 3 classes" in out
    assert ("/good/hmdb51_org.rar", None, 200) in http_server.requests
    assert any(r[0] == "/good/hmdb51_org.rar" and r[2] == 206 for r in http_server.requests)
    assert sorted(p.name for p in (root / "videos").iterdir()) == ["move_left", "move_right", "move_up"]

    requests_before = len(http_server.requests)
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "already complete" in out and len(http_server.requests) == requests_before

    code, out, _ = run(capsys, "data", "summary", "--root", str(root), "--split", "2", "--json")
    summary = json.loads(out)
    assert summary["num_classes"] == 3 and summary["missing"] == [] and summary["unreadable"] == []
    assert summary["counts"]["train"] + summary["counts"]["val"] == 12 and summary["counts"]["test"] == 3


def test_wrong_checksum_is_one_line_and_nothing_is_kept(capsys, tiny_archives, http_server, tmp_path):
    for name in ("hmdb51_org.rar", "test_train_splits.rar"):
        http_server.files[f"/m/{name}"] = (tiny_archives / name).read_bytes()
    root = tmp_path / "hmdb51"
    code, _, err = run(
        capsys,
        "data",
        "download",
        "hmdb51",
        "--root",
        str(root),
        "--mirror",
        f"{http_server.url}/m",
        "--set",
        "download.backoff_s=0.01",
        "--set",
        "download.videos_members=0",
        "--set",
        "download.splits_members=0",
    )  # default MD5 is the real release's
    assert code == 1
    assert err.count("\n") == 1 and "does not match the expected 15e67781e70dcfbdce2d7dbb9b3344b5" in err
    assert not (root / "archives" / "test_train_splits.rar").exists()
    assert not (root / "videos").exists() and not (root / "splits").exists()


def test_local_archives_end_to_end(capsys, tiny_archives, tmp_path):
    root = tmp_path / "hmdb51"
    code, out, err = run(capsys, *extract_argv(root, tiny_archives))
    assert code == 0, err
    code, out, _ = run(capsys, "data", "summary", "--root", str(root), "--split", "1")
    assert code == 0 and "3 classes" in out
    assert not (root / "archives").exists()  # local archives are used in place


@pytest.mark.parametrize("damage", ["truncate", "not_rar"])
def test_corrupt_local_archive(capsys, tiny_archives, tmp_path, damage):
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (tiny_archives / "hmdb51_org.rar").read_bytes()
    (bad / "hmdb51_org.rar").write_bytes(data[: len(data) // 2] if damage == "truncate" else b"<html>gone</html>")
    (bad / "test_train_splits.rar").write_bytes((tiny_archives / "test_train_splits.rar").read_bytes())
    root = tmp_path / "hmdb51"
    code, _, err = run(
        capsys,
        "data",
        "download",
        "hmdb51",
        "--root",
        str(root),
        "--archives",
        str(bad),
        "--set",
        "download.splits_md5=",
    )
    assert code == 1 and err.count("\n") == 1
    assert ("corrupt or truncated" if damage == "truncate" else "is not a RAR archive") in err
    assert not (root / "videos").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_bad_root_and_bad_config_key(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(
        capsys, "data", "download", "hmdb51", "--root", str(blocker / "sub"), "--archives", str(tmp_path)
    )
    assert code == 1 and "cannot write to" in err
    code, _, err = run(capsys, "data", "summary", "--root", str(tmp_path), "--set", "data.nope=1")
    assert code == 2 and "unknown config key data.nope" in err
    code, _, err = run(capsys, "data", "summary", "--root", str(tmp_path / "missing"))
    assert code == 1 and "does not exist" in err


@pytest.mark.slow
def test_console_script_prints_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "actionmoe", "data", "summary", "--root", str(tmp_path), "--split", "5"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "actionmoe: error: config key data.split must be 1, 2 or 3"


def test_synth_command(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "data",
        "synth",
        "--out",
        str(tmp_path),
        "--classes",
        "2",
        "--videos-per-class",
        "4",
        "--frames",
        "4",
        "--size",
        "32x24",
        "--rar-format",
        "rar5",
    )
    assert code == 0 and Path(out.split()[0]).name == "hmdb51_org.rar"
    code, _, err = run(capsys, "data", "synth", "--out", str(tmp_path), "--size", "big")
    assert code == 2 and "--size must look like" in err


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def test_every_option_of_every_command_has_help_text():
    missing = [
        f"{parser.prog} {action.dest}"
        for parser in _all_parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction) and not action.help
    ]
    assert missing == []


@pytest.mark.parametrize(("flags", "shown"), [([], {"INFO", "WARNING"}), (["-q"], {"WARNING"}), (["-v"], {"DEBUG"})])
def test_verbosity_flags(tmp_path, flags, shown):
    script = (
        "import logging, sys; from actionmoe.cli import main; "
        "log = logging.getLogger('actionmoe.test'); "
        "main([*sys.argv[1:], 'info', '--json']); "
        "log.debug('DEBUG'); log.info('INFO'); log.warning('WARNING')"
    )
    result = subprocess.run([sys.executable, "-c", script, *flags], capture_output=True, text=True, check=True)
    lines = result.stderr.splitlines()  # plain lines by default ("warning: ..."), level and logger under -v
    seen = {word for word in ("DEBUG", "INFO", "WARNING") if any(line.endswith(word) for line in lines)}
    assert shown <= seen and (flags != ["-q"] or seen == {"WARNING"})


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


def test_output_paths_that_cannot_be_written(capsys, trained_run, dataset_root, tmp_path, a_file):
    best = trained_run / "best.safetensors"
    for argv in (
        ["evaluate", "--checkpoint", best, "--out", a_file / "eval"],
        ["export", "--checkpoint", best, "--out", a_file / "model.pt2"],
        [
            "predict",
            next((dataset_root / "videos" / "move_up").iterdir()),
            "--checkpoint",
            best,
            "--grid",
            a_file / "grid.png",
        ],
        ["data", "synth", "--out", a_file / "synth", "--classes", "2", "--videos-per-class", "4", "--frames", "4"],
        [
            "data",
            "cache",
            "--root",
            dataset_root,
            "--set",
            f"data.cache={a_file / 'cache'}",
            "--set",
            "data.resize=[32,40]",
            "--set",
            "data.crop_size=24",
        ],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 1 and one_line(err), (argv, err)


def test_predict_grid_into_a_folder_writes_inside_it(capsys, trained_run, dataset_root, tmp_path):
    folder = tmp_path / "grids"
    folder.mkdir()
    video = next((dataset_root / "videos" / "move_up").iterdir())
    code, _, err = run(capsys, "predict", video, "--checkpoint", trained_run / "best.safetensors", "--grid", folder)
    assert code == 0 and err.strip() == f"grid: {folder / 'prediction_grid.png'}"
    assert (folder / "prediction_grid.png").stat().st_size > 1000 and not Path(f"{folder}.png").exists()


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--batch-size", "0"], 2, "--batch-size must be at least 1"),
        (["--workers", "-1"], 2, "--workers 0 or more"),
        (["--device", "bogus"], 2, "unknown device 'bogus'"),
        (["--split", "7"], 2, "--split must be 1, 2 or 3"),
        (["--views", "2x2"], 2, "--views must look like"),
    ],
)
def test_bad_evaluate_options(capsys, trained_run, argv, code, message):
    result, _, err = run(capsys, "evaluate", "--checkpoint", trained_run / "best.safetensors", *argv)
    assert result == code and one_line(err) and message in err


@pytest.mark.parametrize("argv", [["data", "scan", "--workers", "0"], ["data", "cache", "--workers", "-1"]])
def test_bad_worker_counts(capsys, dataset_root, argv):
    code, _, err = run(capsys, *argv[:2], "--root", dataset_root, *argv[2:])
    assert code == 2 and one_line(err) and "--workers must be at least 1" in err


def test_serve_on_a_busy_or_invalid_port(capsys, trained_run):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run(capsys, "serve", "--checkpoint", trained_run / "best.safetensors", "--port", port)
    assert code == 1 and one_line(err) and f"cannot listen on 127.0.0.1:{port}" in err
    code, _, err = run(capsys, "serve", "--checkpoint", trained_run / "best.safetensors", "--port", 70000)
    assert code == 2 and one_line(err) and "--port must be between 1 and 65535" in err


# (exit code, argv) with {best}, {video}, {runs}, {root}, {under} (a path under a regular file), {tmp}
BAD_OUTPUTS = {
    "demo": (1, "demo --out {under}"),
    "train": (1, "train --config demo --root {root} --out {under}"),
    "evaluate": (1, "evaluate --checkpoint {best} --out {under}"),
    "evaluate --all-splits": (1, "evaluate --all-splits {runs} --out {under}"),
    "predict --out": (1, "predict {video} --checkpoint {best} --out {under}/p.csv"),
    "predict --out suffix": (2, "predict {video} --checkpoint {best} --out {tmp}/p.txt"),
    "predict --window suffix": (2, "predict {video} --checkpoint {best} --window 2 --out {tmp}/t.txt"),
    "predict --window": (1, "predict {video} --checkpoint {best} --window 2 --out {under}/t.json"),
    "predict --grid": (1, "predict {video} --checkpoint {best} --grid {under}/g.png"),
    "export": (1, "export --checkpoint {best} --out {under}/m.onnx"),
    "export suffix": (2, "export --checkpoint {best} --out {tmp}/m.txt"),
    "ablate": (1, "ablate --config demo --variant base= --out {under}"),
    "data synth": (1, "data synth --out {under}"),
    "data download": (1, "data download hmdb51 --root {under} --archives {tmp}"),
}


@pytest.mark.parametrize("command", BAD_OUTPUTS)
def test_every_command_refuses_a_bad_output_before_any_work(
    command, capsys, trained_run, dataset_root, tmp_path, a_file
):
    """A rule for the whole command line: outputs are checked first, so a mistake costs under a second."""
    import time

    code, text = BAD_OUTPUTS[command]
    values = {
        "best": trained_run / "best.safetensors",
        "video": next((dataset_root / "videos" / "move_up").iterdir()),
        "runs": trained_run.parent,
        "root": dataset_root,
        "under": a_file / "sub",  # under a regular file: nothing can be created there
        "tmp": tmp_path,
    }
    argv = [part.format(**values) for part in text.split()]
    before = sorted(tmp_path.rglob("*"))
    started = time.perf_counter()
    result = run(capsys, *argv)
    seconds = time.perf_counter() - started
    assert result[0] == code and one_line(result[2]), (argv, result[2])
    assert seconds < 1.0, f"{seconds:.1f} s before the refusal"
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["export"], ["serve"]])
def test_help_ends_with_examples_that_parse(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    text = capsys.readouterr().out
    shown = [line.strip() for line in text.split("examples:\n", 1)[1].splitlines() if line.strip()]
    assert shown
    for line in shown:  # every example is a command this parser accepts
        argv = line.split("#")[0].split()
        if argv[0] == "actionmoe" and "COMMAND" not in argv:
            build_parser().parse_args(argv[1:])
        elif argv[0] == "torchrun":
            build_parser().parse_args(argv[argv.index("actionmoe") + 1 :])
