"""Share a trained model: a model folder in the Hugging Face Hub layout with a model card, uploaded as one commit.

``write_model_folder`` turns a run (or its ``best.safetensors``) into ``model.safetensors``,
``config.json`` and ``README.md`` (``runtime.repository`` describes the layout and reads it back);
``model_card`` writes the card from the run's own records: the test metrics of
``evaluation/metrics.json``, the training recipe of the checkpoint's config, the epochs of
``metrics.jsonl``. ``push_model_folder`` uploads the folder with ``huggingface_hub`` in one commit,
so readers never see half a model.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from actionmoe.errors import CheckpointError, OutputError, UsageError
from actionmoe.evaluation.reports import routing_effect_lines, routing_verdict
from actionmoe.files import check_output_folder, write_atomically, write_json
from actionmoe.predict.export import sidecar_path
from actionmoe.runtime.checkpoint import load_checkpoint
from actionmoe.runtime.repository import CONFIG, WEIGHTS, model_folder_record

CARD = "README.md"
LIMITATIONS = (
    "On the project's synthetic motion benchmark (docs/ablation.md, 3 seeds per variant) neither the motion "
    "module nor the mixture-of-experts head improved test accuracy beyond the seed-to-seed spread; their value "
    "on this dataset is not established unless the run was compared with a linear head and a plain network on "
    "the same split. Test accuracy of a single split says little about footage unlike the training videos."
)


def find_best_checkpoint(source: Path) -> Path:
    """``source`` itself (a checkpoint file) or the ``best.safetensors`` of a run folder.

    Raises:
        CheckpointError: neither.
    """
    if source.is_dir():
        if (source / "best.safetensors").is_file():
            return source / "best.safetensors"
        raise CheckpointError(f"{source} holds no best.safetensors; give a run folder or a checkpoint file")
    if not source.is_file():
        raise CheckpointError(f"no run folder or checkpoint at {source}")
    return source


def write_model_folder(source: Path, out: Path, repo_id: str | None = None) -> Path:
    """Write the model folder of ``source`` (a run folder or checkpoint) into ``out``, which must be empty.

    Raises:
        CheckpointError: no checkpoint, or one that does not load.
        UsageError / OutputError: ``out`` is not an empty, writable folder.
    """
    checkpoint_path = find_best_checkpoint(source)
    checkpoint = load_checkpoint(checkpoint_path)  # refuses a damaged or foreign file before anything is written
    check_output_folder(out, "--dry-run")
    if any(out.iterdir()):
        raise UsageError(f"--dry-run {out} is not empty; give a new or empty folder")
    run_dir = checkpoint_path.parent
    write_atomically(out / WEIGHTS, lambda tmp: shutil.copyfile(checkpoint_path, tmp))
    write_json(out / CONFIG, model_folder_record(checkpoint.sha256, checkpoint.meta))
    onnx = matching_onnx_export(run_dir, checkpoint.sha256)
    if onnx is not None:  # the sidecar keeps its name's relation: model.onnx -> model.onnx.json
        write_atomically(out / "model.onnx", lambda tmp: shutil.copyfile(onnx, tmp))
        write_atomically(out / "model.onnx.json", lambda tmp: shutil.copyfile(sidecar_path(onnx), tmp))
    metrics = _read_json(run_dir / "evaluation" / "metrics.json")
    write_atomically(out / CARD, model_card(checkpoint.meta, metrics, repo_id or "OWNER/NAME"))
    return out


def matching_onnx_export(run_dir: Path, checkpoint_sha256: str) -> Path | None:
    """An ONNX export in the run folder made from this very checkpoint (its sidecar says so), or None."""
    for candidate in sorted(run_dir.glob("*.onnx")):
        sidecar = _read_json(sidecar_path(candidate))
        if sidecar and sidecar.get("checkpoint_sha256") == checkpoint_sha256:
            return candidate
    return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def model_card(meta: dict, metrics: dict | None, repo_id: str) -> str:
    """The README.md of a model folder: Hub metadata, what it does, how well (test numbers), how it trained."""
    config = meta.get("config") or {}
    dataset = (meta.get("dataset") or {}).get("name", "unknown")
    classes = meta.get("classes") or []
    lines = [
        "---",
        "library_name: actionmoe",
        "pipeline_tag: video-classification",
        "tags: [video-classification, action-recognition, mixture-of-experts, r2plus1d]",
        *([f"datasets: [{dataset}]"] if dataset in ("hmdb51", "ucf101") else []),
        "metrics: [accuracy]",
        "---",
        "",
        f"# {repo_id.split('/')[-1]}: action recognition on {dataset} ({len(classes)} classes)",
        "",
        "R(2+1)D-18 with motion dynamics modules and a mixture-of-experts head, trained with "
        f"[actionmoe](https://pypi.org/project/actionmoe/) {meta.get('actionmoe', '')}.",
        "",
        "## Use it",
        "",
        "```python",
        "from huggingface_hub import snapshot_download",
        "from actionmoe import Predictor",
        f'print(Predictor.from_checkpoint(snapshot_download("{repo_id}")).predict("video.mp4").predictions)',
        "```",
        "",
        *_test_lines(metrics, meta),
        *_training_lines(config, meta),
        "## Limitations",
        "",
        LIMITATIONS,
        "",
        "## Classes",
        "",
        ", ".join(classes),
        "",
    ]
    return "\n".join(lines)


def _test_lines(metrics: dict | None, meta: dict) -> list[str]:
    if metrics is None:
        return ["## Test results", "", "Not evaluated: the run folder held no evaluation/metrics.json.", ""]
    video, protocol = metrics["video_level"], metrics["protocol"]
    lines = [
        "## Test results",
        "",
        f"{protocol['dataset']} split {protocol['split']}, test subset, {metrics['videos']} videos, "
        f"{protocol['views']} views (clips x crops) of {protocol['frames_per_clip']} frames at "
        f"{protocol['crop_size']}x{protocol['crop_size']}; video level = {protocol['aggregation']}.",
        "",
        "| top-1 | top-5 | mean class accuracy | chance |",
        "|---|---|---|---|",
        f"| {video['top1']:.4f} | {video['top5']:.4f} | {video['mean_class_accuracy']:.4f} | "
        f"{video.get('chance_top1', float('nan')):.4f} |",
        "",
        "| class | accuracy (recall) | test videos |",
        "|---|---|---|",
    ]
    for name, row in video["per_class"].items():
        lines.append(f"| {name} | {row['recall']:.3f} | {row['support']} |")
    experts = metrics.get("experts")
    if experts:
        lines += ["", f"Routing at test time: {routing_verdict(experts)}"]
        lines += routing_effect_lines(experts.get("routing_effect"))
    return [*lines, ""]


def _training_lines(config: dict, meta: dict) -> list[str]:
    train, data, model = config.get("train", {}), config.get("data", {}), config.get("model", {})
    machine = meta.get("machine") or {}
    return [
        "## Training",
        "",
        f"- data: {data.get('dataset')} split {data.get('split')}, validation "
        + ("on the test split (optimistic)" if data.get("val_on_test") else f"holdout {data.get('val_fraction')}"),
        f"- model: backbone weights {model.get('weights')}, motion taps {model.get('motion_taps')}, head "
        f"{model.get('head')} ({model.get('num_experts')} experts, top-{model.get('top_k')}, shared expert "
        f"{model.get('shared_expert')})",
        f"- optimiser {train.get('optimizer')} lr {train.get('lr')}, batch {train.get('batch_size')}, "
        f"{train.get('epochs')} epochs planned, scheduler {train.get('scheduler')}, precision {train.get('precision')}",
        f"- best validation top-1 {meta.get('best_metric', float('nan')):.4f} at epoch "
        f"{(meta.get('best_epoch') or 0) + 1}",
        f"- augmentation: {data.get('augment', 'none')}, crop scale {data.get('crop_scale') or 'plain'}, MixUp "
        f"{train.get('mixup_alpha', 0.0)}, CutMix {train.get('cutmix_alpha', 0.0)}, EMA {train.get('ema_decay', 0.0)}",
        f"- machine: {machine.get('device', 'not recorded')}, torch {machine.get('torch', 'not recorded')}",
        "",
    ]


def check_repo_id(repo_id: str) -> None:
    """OWNER/NAME as the Hub accepts it, checked before any work.

    Raises:
        UsageError: anything else.
    """
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}", repo_id) or ".." in repo_id:
        raise UsageError(f"--repo must be OWNER/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}")


def push_model_folder(folder: Path, repo_id: str, private: bool = False, revision: str | None = None) -> str:
    """Upload ``folder`` to the Hub repository ``repo_id`` in one commit; returns the commit URL.

    ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured (``huggingface_hub``'s own settings).

    Raises:
        UsageError: ``huggingface_hub`` is missing, the repository name is invalid, or there is no token.
        OutputError: the Hub refused the upload.
    """
    try:
        from huggingface_hub import CommitOperationAdd, HfApi, get_token
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        raise UsageError("push needs huggingface_hub: pip install 'actionmoe[hub]'") from None
    check_repo_id(repo_id)
    api = HfApi()
    if get_token() is None:  # HF_TOKEN, or the login `hf auth login` saved
        raise UsageError("push needs a Hub token: set HF_TOKEN or run `hf auth login`")
    additions = [CommitOperationAdd(path.name, str(path)) for path in sorted(folder.iterdir()) if path.is_file()]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(  # one commit: readers see the old model or the whole new one
            repo_id, additions, commit_message="Upload actionmoe model", revision=revision
        )
    except HfHubHTTPError as exc:
        raise OutputError(f"the Hub refused the upload to {repo_id}: {str(exc).splitlines()[0]}") from None
    return str(info.commit_url)
