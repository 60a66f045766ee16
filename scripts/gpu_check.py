"""One-shot GPU check: every CUDA code path of actionmoe run once, every figure in one JSON file.

    make gpu-check                                  # or, on a bare GPU machine, from the source tree:
    PYTHONPATH=src python3 scripts/gpu_check.py --out gpu_check.json

Steps (each a separate ``python3 -m actionmoe`` process, each with a time limit; the whole check is
sized to finish in under 8 minutes on one datacenter GPU):

1. ``actionmoe info``
2. ``bench model --device cuda`` (eager, then compiled)
3. ``bench train --device cuda`` on a 51-class synthetic cache
4. a 2-epoch training of a 51-class synthetic dataset at 16x112x112, precision auto, torch.compile,
   which ends with the test evaluation; then ``actionmoe evaluate`` on its best checkpoint
5. a 1-GPU torchrun (NCCL) training

Exit code 0 when every step passed, 1 otherwise; on a machine without CUDA it says so in one line
and exits 0 without running anything. ``--tiny --allow-cpu`` runs the same steps with tiny sizes on
the CPU (gloo instead of NCCL, no compile, no benchmarks): the test suite uses it to check this script.

A bare GPU image often has torch, torchvision, opencv-python-headless, safetensors, scikit-learn,
matplotlib and tqdm but neither PyAV nor rars and no package index: this check needs neither (the
dataset is written as plain AVI files with OpenCV, and PyAV and rars are imported only where used).
A missing small pure-Python wheel can be carried over: ``pip download --no-deps NAME==VERSION -d
wheels/`` on a machine with an index, then ``pip install --no-index --no-deps wheels/*.whl`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    args = parse_args()
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu-check: no CUDA GPU here, nothing to check (run it on a machine with an NVIDIA GPU)")
        return 0
    work = args.out.parent / "gpu_check_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    report = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "tiny": args.tiny,
        "steps": {},
    }
    started = time.monotonic()
    for name, step in plan(args, work):
        report["steps"][name] = run_step(name, step, work)
        report["seconds"] = time.monotonic() - started
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # what ran so far survives a kill
    failed = [name for name, result in report["steps"].items() if not result["ok"]]
    summary = f"gpu-check: {len(report['steps']) - len(failed)} of {len(report['steps'])} steps passed"
    print(f"{summary} in {report['seconds']:.0f} s; figures in {args.out}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "runs" / "gpu-check" / "gpu_check.json",
        help="the JSON report (default runs/gpu-check/gpu_check.json)",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, no compile, no benchmarks")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU too (for testing this script)")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return args


def plan(args: argparse.Namespace, work: Path) -> list[tuple[str, dict]]:
    """(name, {command, timeout, json}) for every step; the dataset is written by the first one."""
    tiny, device = args.tiny, "cuda" if not args.allow_cpu else "cpu"
    dataset, run, ddp_run = work / "dataset", work / "run", work / "ddp_run"
    train = train_overrides(tiny, device, dataset)
    steps = [
        ("info", {"command": ["info", "--json"], "timeout": 60, "json": True}),
        ("dataset", {"python": write_dataset_code(dataset, tiny), "timeout": 120}),
    ]
    if not tiny:
        steps += [
            (
                "bench_model",
                {
                    "command": ["bench", "model", "--device", "cuda", "--json", "--repeats", "3"],
                    "timeout": 150,
                    "json": True,
                },
            ),
            (
                "bench_train",
                {
                    "command": ["bench", "train", "--device", "cuda", "--json", "--repeats", "2"],
                    "timeout": 150,
                    "json": True,
                },
            ),
        ]
    steps += [
        (
            "cache",
            {
                "command": ["data", "cache", "--root", str(dataset), "--json", *train["data"]],
                "timeout": 120,
                "json": True,
            },
        ),
        (
            "train",
            {
                "command": ["train", "--out", str(run), *train["all"]],
                "timeout": 240,
                "read": run / "evaluation" / "metrics.json",
            },
        ),
        (
            "evaluate",
            {
                "command": [
                    "evaluate",
                    "--checkpoint",
                    str(run / "best.safetensors"),
                    "--json",
                    "--out",
                    str(work / "evaluation"),
                ],
                "timeout": 90,
                "json": True,
            },
        ),
        (
            "torchrun",
            {
                "torchrun": [
                    "train",
                    "--out",
                    str(ddp_run),
                    *train["all"],
                    "--set",
                    "train.epochs=1",
                    "--set",
                    "train.compile=false",
                ],
                "timeout": 180,
                "read": ddp_run / "metrics.jsonl",
            },
        ),
    ]
    return steps


def train_overrides(tiny: bool, device: str, dataset: Path) -> dict[str, list[str]]:
    data = {
        "data.dataset": "folder",
        "data.root": str(dataset),
        "data.num_workers": "1" if tiny else "8",
        "data.clip_len": "8" if tiny else "16",
        "data.resize": "[36,48]" if tiny else "[128,171]",
        "data.crop_size": "32" if tiny else "112",
        "data.presample_frames": "16" if tiny else "32",
        "data.val_fraction": "0.2",
    }
    train = {
        "model.weights": "none",
        "model.layer4_temporal_stride": "false",
        "train.epochs": "1" if tiny else "2",
        "train.batch_size": "4" if tiny else "32",
        "train.precision": "auto",
        "train.device": device,
        "train.compile": "false" if tiny else "true",
        "train.scheduler": "cosine",
        "train.warmup_epochs": "0",
    }
    as_args = lambda values: [item for key, value in values.items() for item in ("--set", f"{key}={value}")]
    return {"data": as_args(data), "all": ["--config", "hmdb51", *as_args(data), *as_args(train)]}


def write_dataset_code(folder: Path, tiny: bool) -> str:
    """Python that writes the synthetic class-folder dataset: 51 classes (the 12 motions, repeated) of AVIs."""
    classes, per_class, frames, size = (3, 5, 16, (48, 64)) if tiny else (51, 8, 32, (128, 171))
    return f"""
from pathlib import Path
import numpy as np
from actionmoe.acquire.synthetic import MOTIONS, render_video
from actionmoe.data.decode import write_video
motions = sorted(MOTIONS)
for label in range({classes}):
    folder = Path({str(folder)!r}) / f"class_{{label:02d}}_{{motions[label % len(motions)]}}"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range({per_class}):
        video = render_video(motions[label % len(motions)], np.random.default_rng([label, index]), {frames}, *{size})
        write_video(folder / f"v{{index}}.avi", video, fps=25)
print({classes} * {per_class}, "videos")
"""


def run_step(name: str, step: dict, work: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONUNBUFFERED": "1",
    }
    if "python" in step:
        command = [sys.executable, "-c", step["python"]]
    elif "torchrun" in step:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "1",
            "-m",
            "actionmoe",
            "-q",
            *step["torchrun"],
        ]
    else:
        command = [sys.executable, "-m", "actionmoe", "-q", *step["command"]]
    started = time.monotonic()
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=step["timeout"], cwd=work)
    except subprocess.TimeoutExpired:
        return {"ok": False, "seconds": step["timeout"], "error": f"timed out after {step['timeout']} s"}
    outcome = {"ok": result.returncode == 0, "seconds": time.monotonic() - started}
    if result.returncode != 0:
        outcome["error"] = (result.stderr.strip() or result.stdout.strip())[-2000:]
    elif step.get("json"):
        outcome["result"] = json.loads(result.stdout)
    elif "read" in step:
        outcome["result"] = read_result(step["read"])
    print(f"gpu-check: {name}: {'ok' if outcome['ok'] else 'FAILED'} ({outcome['seconds']:.0f} s)", flush=True)
    return outcome


def read_result(path: Path) -> object:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


if __name__ == "__main__":
    sys.exit(main())
