"""Write an evaluation to a folder: metrics.json, report.md, confusion_matrix.csv and the plots."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from actionmoe.errors import DatasetError, OutputError, UsageError
from actionmoe.evaluation.evaluate import Evaluation, EvaluationOptions, evaluate_checkpoint
from actionmoe.evaluation.metrics import per_class_accuracy
from actionmoe.evaluation.plots import (
    plot_class_expert_routing,
    plot_confusion,
    plot_expert_usage,
    plot_per_class_accuracy,
    plot_reliability,
    plot_risk_coverage,
    plot_training_curves,
)
from actionmoe.files import (
    ensure_writable,
    remove_stale_temporaries,
    staging_path,
    write_atomically,
    write_json,
)


def evaluate_into(checkpoint: Path, out: Path, options: EvaluationOptions = EvaluationOptions()) -> dict:
    """Evaluate ``checkpoint`` on its test split and write every report file into ``out``; returns the metrics."""
    out = check_evaluation_folder(out)
    evaluation = evaluate_checkpoint(checkpoint, options)
    write_report(evaluation, out)
    return evaluation.metrics


MARKER = ".actionmoe-evaluation"  # written into every evaluation folder: only such a folder is ever replaced
REPORT_NAMES = {
    MARKER,
    "metrics.json",
    "report.md",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "per_class_accuracy.png",
    "reliability.png",
    "risk_coverage.png",
    "expert_usage.png",
    "class_expert_routing.png",
    "training_curves.png",
}


def check_evaluation_folder(out: Path, option: str = "--out") -> Path:
    """``out`` as an absolute path, if an evaluation may be written there: absent, empty, or an earlier evaluation.

    Raises:
        UsageError: ``out`` holds anything else (a run folder, a project): nothing there is ever deleted.
        OutputError: it cannot be written.
    """
    out = Path(os.path.abspath(out))
    ensure_writable(out.parent, option)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {out} exists and is not a folder; choose a folder for the evaluation")
    foreign = sorted(entry.name for entry in out.iterdir() if entry.name not in REPORT_NAMES) if out.is_dir() else []
    if foreign:
        raise UsageError(
            f"{option} {out} holds files that are not an evaluation ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new folder, nothing was changed"
        )
    remove_stale_temporaries(out.parent)
    return out


def evaluation_is_complete(out: Path) -> bool:
    """``out`` holds a whole evaluation (its metrics.json is put in place last)."""
    return (out / "metrics.json").is_file() and (out / "report.md").is_file()


def write_report(evaluation: Evaluation, out: Path) -> list[Path]:
    """Every output file of ``actionmoe evaluate`` into ``out``; returns their paths.

    The files are written into a hidden staging folder beside ``out``. A new ``out`` is that folder
    renamed; an existing one (empty, or an earlier evaluation: ``check_evaluation_folder``) gets
    the files moved in, its old ``metrics.json`` removed first and the new one moved in last, so a
    kill part-way leaves an evaluation that ``evaluation_is_complete`` calls incomplete, never a
    mix that looks whole. Nothing else in ``out`` is touched.
    """
    out = check_evaluation_folder(out)
    staging = staging_path(out)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        names = [MARKER, *_write_report_files(evaluation, staging)]
        (staging / MARKER).write_text("written by actionmoe evaluate; the folder may be replaced by the next one\n")
        if out.is_dir():
            _move_into(staging, out, names)
        else:
            staging.rename(out)
    except OSError as exc:
        raise OutputError(f"cannot write the evaluation into {out} ({exc.strerror or exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in names if name != MARKER]


def _move_into(staging: Path, out: Path, names: list[str]) -> None:
    (out / "metrics.json").unlink(missing_ok=True)  # the old evaluation stops counting as complete
    for name in REPORT_NAMES - set(names):
        (out / name).unlink(missing_ok=True)  # a plot the new evaluation does not have
    for name in sorted(names, key=lambda n: n == "metrics.json"):
        os.replace(staging / name, out / name)


def _write_report_files(evaluation: Evaluation, out: Path) -> list[str]:
    metrics = evaluation.metrics
    classes = list(evaluation.classes)
    written = ["metrics.json", "report.md", "confusion_matrix.csv", "confusion_matrix.png", "per_class_accuracy.png"]
    calibrated = metrics["video_level"]["calibration"]
    plot_reliability(calibrated["bins"], calibrated["ece"], out / "reliability.png")
    written.append("reliability.png")
    video = metrics["video_level"]
    plot_risk_coverage(video["risk_coverage"], video["chance_top1"], out / "risk_coverage.png")
    written.append("risk_coverage.png")
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n")
    _write_confusion_csv(evaluation.confusion, classes, out / "confusion_matrix.csv")
    protocol = metrics["protocol"]
    title = f"{protocol['dataset']} split {protocol['split']} test, views {protocol['views']}: row-normalised"
    plot_confusion(evaluation.confusion, classes, out / "confusion_matrix.png", title)
    plot_per_class_accuracy(
        per_class_accuracy(evaluation.confusion),
        classes,
        out / "per_class_accuracy.png",
        metrics["video_level"]["mean_class_accuracy"],
    )
    experts = metrics["experts"]
    if experts is not None:
        plot_expert_usage(experts["fraction_routed"], experts["mean_gate"], out / "expert_usage.png")
        plot_class_expert_routing(np.array(experts["class_expert_gate"]), classes, out / "class_expert_routing.png")
        written += ["expert_usage.png", "class_expert_routing.png"]
    if plot_training_curves(evaluation.restored.path.parent / "metrics.jsonl", out / "training_curves.png"):
        written.append("training_curves.png")
    (out / "report.md").write_text(markdown_report(metrics, evaluation.confusion, classes, set(written)))
    return written


def json_safe(value):
    """``value`` with NaN and infinities replaced by None, so that it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _write_confusion_csv(matrix: np.ndarray, classes: list[str], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, matrix):
            writer.writerow([name, *row.tolist()])


def headline(metrics: dict) -> str:
    """One line: the split, the videos, the views and the accuracy (top-5 only with more than 5 classes)."""
    video = metrics["video_level"]
    protocol = metrics["protocol"]
    top5 = f", top-5 {video['top5']:.3f}" if _shows_top5(metrics) else ""
    return (
        f"test split {protocol['split']} ({metrics['videos']} videos, views {protocol['views']}): "
        f"top-1 {video['top1']:.3f}{top5}, mean class accuracy {video['mean_class_accuracy']:.3f}"
    )


def _shows_top5(metrics: dict) -> bool:
    """With 5 classes or fewer every label is in the top 5: the number says nothing."""
    return len(metrics["video_level"]["per_class"]) > 5


def markdown_report(metrics: dict, matrix: np.ndarray, classes: list[str], plots: set[str] = frozenset()) -> str:
    """report.md: headline, protocol, training, accuracy (with its plots), timing, per class, experts."""
    protocol = metrics["protocol"]
    lines = [
        "# Evaluation report",
        "",
        f"**{headline(metrics)}**",
        "",
        "## Protocol",
        "",
        f"- dataset {protocol['dataset']}, split {protocol['split']}, subset test ({metrics['videos']} videos, "
        f"{len(metrics['skipped_videos'])} unreadable skipped)",
        f"- {protocol['clips_per_video']} clip(s) x {protocol['crops_per_clip']} crop(s) per video, "
        f"{protocol['frames_per_clip']} frames, resized to {protocol['resize'][0]}x{protocol['resize'][1]}, "
        f"crop {protocol['crop_size']}",
        f"- video level: {protocol['aggregation']}; clip level: each view on its own",
        f"- checkpoint {metrics['checkpoint']['path']} (sha256 {metrics['checkpoint']['sha256'][:12]}...), "
        f"device {metrics['device']}",
        *_training_lines(metrics["checkpoint"], plots),
        *_accuracy_lines(metrics, plots),
        *_timing_lines(metrics["inference"]),
        *_per_class_lines(metrics["video_level"]["per_class"]),
    ]
    lines += ["", "## Most frequent confusions", "", "| true | predicted | videos |", "|---|---|---|"]
    lines += [f"| {classes[t]} | {classes[p]} | {n} |" for t, p, n in top_confusions(matrix, 10)]
    lines += _expert_lines(metrics["experts"], classes, plots)
    lines += _direction_lines(metrics.get("direction"))
    return "\n".join(lines) + "\n"


def _training_lines(checkpoint: dict, plots: set[str]) -> list[str]:
    epoch = checkpoint.get("epoch")
    if epoch is None:
        return []
    planned = checkpoint.get("epochs_planned")
    trained = checkpoint.get("epochs_trained")
    best = checkpoint.get("best_val_top1")
    ran = "" if trained is None else f"; the run trained {trained} epoch{'s' if trained != 1 else ''}"
    stopped = " and stopped early (no validation gain)" if checkpoint.get("stopped_early") else ""
    lines = [
        "",
        "## Training",
        "",
        f"These weights are from epoch {epoch} of {planned}"
        + ("" if best is None else f", the best validation top-1 of the run ({best:.3f})")
        + f"{ran}{stopped}.",
    ]
    if "training_curves.png" in plots:
        lines += ["", "![loss and accuracy per epoch](training_curves.png)"]
    return lines


def _accuracy_lines(metrics: dict, plots: set[str]) -> list[str]:
    video = metrics["video_level"]
    clip = metrics["clip_level"]
    top5 = _shows_top5(metrics)
    chance = video.get("chance_top1", 1 / len(video["per_class"]))
    lines = [
        "",
        "## Accuracy",
        "",
        f"Chance level {chance:.3f} ({len(video['per_class'])} classes).",
        "",
        "| level | top-1 | top-5 | mean class accuracy |" if top5 else "| level | top-1 | mean class accuracy |",
        "|---|---|---|---|" if top5 else "|---|---|---|",
        f"| video | {video['top1']:.4f} | {video['top5']:.4f} | {video['mean_class_accuracy']:.4f} |"
        if top5
        else f"| video | {video['top1']:.4f} | {video['mean_class_accuracy']:.4f} |",
        f"| clip | {clip['top1']:.4f} | {clip['top5']:.4f} | |" if top5 else f"| clip | {clip['top1']:.4f} | |",
    ]
    if "confusion_matrix.png" in plots:
        lines += ["", "![confusion matrix, each row sums to 1](confusion_matrix.png)"]
    if "per_class_accuracy.png" in plots:
        lines += ["", "![accuracy per class](per_class_accuracy.png)"]
    return (
        lines
        + _calibration_lines(video.get("calibration"), clip.get("calibration"), plots, metrics.get("calibration"))
        + _risk_coverage_lines(video.get("risk_coverage"), plots)
    )


def _risk_coverage_lines(curve: dict | None, plots: set[str]) -> list[str]:
    """What a ``--min-confidence`` costs and buys on this test split (reports before 2026-12-02 lack it)."""
    if curve is None:
        return []
    lines = [
        "",
        "## Answering only when confident",
        "",
        "With `--min-confidence P` a video whose top probability is not above P is answered `unknown`. "
        "Answering the most confident videos first, on this test split:",
        "",
        "| videos answered | accuracy of those | --min-confidence |",
        "|---|---|---|",
    ]
    for coverage, accuracy, threshold in zip(curve["coverage"], curve["accuracy"], curve["min_confidence"]):
        if round(coverage * 100) % 25 == 0 or coverage == curve["coverage"][0]:
            lines.append(f"| {coverage:.0%} | {accuracy:.3f} | {threshold:.6f} |")  # near 1: six places
    if "risk_coverage.png" in plots:
        lines += ["", "![accuracy of the answered videos against the share answered](risk_coverage.png)"]
    return lines


def _calibration_lines(video: dict | None, clip: dict | None, plots: set[str], scaling: dict | None) -> list[str]:
    """ECE and Brier, video and clip level, the temperature and the reliability diagram (older reports lack them)."""
    if video is None:
        return []
    scaling = scaling or {}
    lines = [
        "",
        "## Calibration",
        "",
        f"Expected calibration error {video['ece']:.3f} (top-1 confidence, 15 equal-width bins; 0 = confidence "
        f"equals accuracy), Brier score {video['brier']:.3f} at the video level"
        + (f"; clip level {clip['ece']:.3f} and {clip['brier']:.3f}." if clip else "."),
    ]
    if "temperature" in scaling:
        before, fitted = scaling["before_scaling"], scaling.get("validation", {})
        where = (
            f"fitted on {fitted['videos']} validation videos "
            f"(NLL {fitted['nll_before']:.3f} -> {fitted['nll_after']:.3f})"
            if scaling.get("fitted_on")
            else "none fitted for this checkpoint"
        )
        lines += [
            "",
            f"These probabilities divide the logits by the temperature {scaling['temperature']:.3f}, {where}. "
            f"Before temperature scaling the test ECE was {before['ece']:.3f} "
            f"and the Brier score {before['brier']:.3f}." + (f" {fitted['warning']}" if "warning" in fitted else ""),
        ]
    if "reliability.png" in plots:
        lines += ["", "![accuracy against confidence per bin](reliability.png)"]
    return lines


def _per_class_lines(per_class: dict) -> list[str]:
    """Precision, recall, F1 and test videos per class, and the training videos when the run recorded them."""
    counted = all("train_videos" in values for values in per_class.values())
    lines = [
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | test videos |" + (" training videos |" if counted else ""),
        "|---|---|---|---|---|" + ("---|" if counted else ""),
    ]
    for name, v in per_class.items():
        train = f" {v['train_videos']} |" if counted else ""
        lines.append(f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |{train}")
    return lines


def _timing_lines(timing: dict) -> list[str]:
    return [
        "",
        "## Inference time (model only, warm-up excluded)",
        "",
        "| ms / clip | ms / video | clips / s | p50 ms / clip | p95 ms / clip |",
        "|---|---|---|---|---|",
        f"| {_num(timing['ms_per_clip'])} | {_num(timing['ms_per_video'])} | {_num(timing['clips_per_s'])} | "
        f"{_num(timing['p50_ms_per_clip'])} | {_num(timing['p95_ms_per_clip'])} |",
    ]


def top_confusions(matrix: np.ndarray, count: int) -> list[tuple[int, int, int]]:
    off_diagonal = [(int(t), int(p), int(matrix[t, p])) for t, p in zip(*np.nonzero(matrix)) if t != p]
    return sorted(off_diagonal, key=lambda item: -item[2])[:count]


def _expert_lines(experts: dict | None, classes: list[str], plots: set[str] = frozenset()) -> list[str]:
    if experts is None:
        return []
    lines = [
        "",
        "## Experts",
        "",
        f"**{routing_verdict(experts)}**",
        "",
        routing_sentence(experts),
        *router_logit_line(experts),
        *routing_effect_lines(experts.get("routing_effect")),
        "",
        "| expert | fraction of videos routed | mean gate weight | classes it leads |",
        "|---|---|---|---|",
    ]
    weights = np.array(experts["class_expert_gate"])  # [C, E]
    leaders = class_leaders(weights)
    for index, (fraction, gate) in enumerate(zip(experts["fraction_routed"], experts["mean_gate"])):
        led = [classes[c] for c in np.nonzero(leaders == index)[0]]
        lines.append(
            f"| {index} | {fraction:.3f} | {gate:.3f} | {', '.join(led[:8])}{' ...' if len(led) > 8 else ''} |"
        )
    for name, caption in (
        ("expert_usage.png", "use of each expert"),
        ("class_expert_routing.png", "mean gate per class"),
    ):
        if name in plots:
            lines += ["", f"![{caption}]({name})"]
    return lines


TIE_MARGIN = 0.05  # a class "leads to" an expert only when its mean gate beats the runner-up by this much


def class_leaders(weights: np.ndarray) -> np.ndarray:
    """For each class [C], the expert its mean gate weight [C, E] clearly favours, or -1 for a near-tie."""
    ranked = np.sort(weights, axis=1)
    margin = ranked[:, -1] - (ranked[:, -2] if weights.shape[1] > 1 else 0.0)
    return np.where(margin >= TIE_MARGIN, weights.argmax(axis=1), -1)


def routing_verdict(experts: dict) -> str:
    """What the router does, in one plain sentence that opens the routing section."""
    count = len(experts["fraction_routed"])
    idle = experts["experts_under_5_percent"]
    active = [share for share in experts["fraction_routed"] if share >= 0.05]
    if idle and all(share >= 0.95 for share in active):
        return (
            f"Routing collapsed: {len(active)} of {count} experts take every video and the other {idle} "
            f"(almost) none, whatever the class."
        )
    if idle:
        verb = "sees" if idle == 1 else "see"
        partly = f"Routing partly collapsed: {idle} of {count} experts {verb} under 5% of the videos"
        return partly + ("; the others specialise by class." if _specialised(experts) else ".")
    if _specialised(experts):
        return "The experts specialise by class: which experts a video gets depends on what it shows."
    return "Every expert is used, but the choice of expert does not depend on the class."


def _specialised(experts: dict) -> bool:
    mi = experts["class_expert_mi"]
    baseline = experts["class_expert_mi_random"]
    return mi > max(2 * baseline, baseline + 0.1)


def routing_sentence(experts: dict) -> str:
    """The routing numbers in one sentence a reader can act on."""
    entropy = experts["normalized_entropy_of_mean_gate"]
    idle = experts["experts_under_5_percent"]
    mi = experts["class_expert_mi"]
    baseline = experts["class_expert_mi_random"]
    count = len(experts["fraction_routed"])
    use = "shares the videos evenly" if entropy >= 0.9 else "favours some experts"
    idle_text = "every expert takes part" if idle == 0 else f"{idle} of {count} experts see under 5% of the videos"
    speciality = (
        "experts specialise by class" if _specialised(experts) else "the choice of expert says little about the class"
    )
    return (
        f"At test time the router {use} (normalised entropy of the mean gate {entropy:.2f}, 1 = even), "
        f"{idle_text}, and {speciality} (class-expert mutual information from the gate weights {mi:.2f}, "
        f"against {baseline:.2f} with the classes shuffled)."
    )


def router_logit_line(experts: dict) -> list[str]:
    """Why the router routes as it does: how much its preferences depend on the video (newer runs only)."""
    if experts.get("router_input_share") is None:
        return []
    return [
        "",
        f"{experts['router_input_share']:.0%} of the variation in the router's logits depends on the video "
        "(0% = every video gets the same experts, whatever it shows); their scale is "
        f"{experts['router_logit_scale']:.2g}.",
    ]


def routing_effect_lines(effect: dict | None) -> list[str]:
    """Whether routing changes predictions: the same head with its own, uniform and other videos' gates."""
    if not effect:
        return []
    changed = effect["changed_by_permuted_gates"]
    verdict = (
        "Routing changes no prediction here: with other videos' gates every video keeps its answer."
        if changed == 0 and effect["changed_by_uniform_gates"] == 0
        else f"Routing matters: {changed:.1%} of the predictions change when videos swap gates."
    )
    return [
        "",
        f"{verdict} Test top-1 with the router's gates {effect['top1_real_gates']:.3f}, with uniform gates over "
        f"the routed experts {effect['top1_uniform_gates']:.3f} ({effect['changed_by_uniform_gates']:.1%} of "
        f"predictions change), with the gates of other videos {effect['top1_permuted_gates']:.3f}.",
    ]


def _direction_lines(direction: dict | None) -> list[str]:
    """Twin accuracy and the time-reversal test (synthetic motions), or why they do not apply."""
    if direction is None:
        return []
    lines = ["", "## Direction", ""]
    if not direction["applies"]:
        return lines + [f"The direction tests do not apply: {direction['reason']}."]
    twin = direction["twin_accuracy"]
    lines.append(
        f"- twin accuracy {_num(twin)}: of the {direction['predicted_inside_pair']} videos predicted as their class "
        "or its time-reversed twin, the share on the right side (0.5 = blind to the order of frames)"
    )
    if "reversal_moves_to_twin" in direction:
        lines.append(
            f"- every test clip played backwards: {direction['reversal_moves_to_twin']:.1%} of the "
            f"{direction['videos_with_twin']} videos with a twin move to the twin, "
            f"{direction['reversal_unchanged']:.1%} keep their prediction"
        )
    return lines


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def find_split_checkpoints(run_root: Path) -> dict[int, Path]:
    """``best.safetensors`` of each split run under ``run_root`` (folders named ``*split<N>*``)."""
    found = {}
    for split in (1, 2, 3):
        candidates = sorted(run_root.glob(f"*split{split}*/best.safetensors"))
        if candidates:
            found[split] = candidates[0]
    return found


def evaluate_all_splits(run_root: Path, out: Path, options: EvaluationOptions = EvaluationOptions()) -> dict:
    """Evaluate the best checkpoint of each split run under ``run_root``; mean and std over splits.

    Writes ``out/split<N>/`` for each split and ``out/summary.json`` + ``summary.md``.
    """
    checkpoints = find_split_checkpoints(run_root)
    if not checkpoints:
        raise DatasetError(f"no */best.safetensors under {run_root} in folders named like hmdb51-split1")
    per_split = {
        split: evaluate_into(path, out / f"split{split}", replace(options, split=split))
        for split, path in checkpoints.items()
    }
    summary = split_summary(per_split)
    write_json(out / "summary.json", summary)
    write_atomically(out / "summary.md", split_summary_markdown(summary))
    return summary


def split_summary(per_split: dict[int, dict]) -> dict:
    """Mean and population standard deviation over splits of the video-level metrics."""
    summary: dict = {"splits": sorted(per_split), "per_split": {}}
    for key in ("top1", "top5", "mean_class_accuracy"):
        values = np.array([per_split[s]["video_level"][key] for s in sorted(per_split)])
        summary[key] = {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}
    for split, metrics in per_split.items():
        summary["per_split"][str(split)] = {
            k: metrics["video_level"][k] for k in ("top1", "top5", "mean_class_accuracy")
        }
    return summary


def format_split_summary(summary: dict, out: Path) -> str:
    top1 = summary["top1"]
    return f"splits {summary['splits']}: top-1 {top1['mean']:.4f} +- {top1['std']:.4f}; summary: {out / 'summary.md'}"


def split_summary_markdown(summary: dict) -> str:
    lines = [
        "# Evaluation over splits",
        "",
        f"Splits evaluated: {', '.join(map(str, summary['splits']))} (the standard HMDB51 protocol averages 1-3).",
        "",
        "| metric | mean | std | per split |",
        "|---|---|---|---|",
    ]
    for key in ("top1", "top5", "mean_class_accuracy"):
        item = summary[key]
        lines.append(
            f"| {key} | {item['mean']:.4f} | {item['std']:.4f} | {', '.join(f'{v:.4f}' for v in item['values'])} |"
        )
    return "\n".join(lines) + "\n"
