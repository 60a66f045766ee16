"""``actionmoe evaluate`` on a checkpoint trained on the synthetic dataset."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from actionmoe.cli import main
from actionmoe.evaluation.evaluate import EvaluationOptions, evaluate_checkpoint
from tests.helpers import extract_argv

EXPECTED_FILES = {
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


def test_writes_every_file_with_real_content(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(trained_run / "best.safetensors"),
                "--views",
                "2x3",
                "--out",
                str(out),
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert "test split 1 (9 videos, views 2x3)" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES | {".actionmoe-evaluation"}  # the marker: ours
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["views"] == "2x3" and metrics["clip_level"]["clips"] == 9 * 6
    assert set(metrics["video_level"]["per_class"]) == {"move_left", "move_right", "move_up"}
    assert metrics["inference"]["ms_per_clip"] > 0 and metrics["inference"]["warmup_batches_excluded"] == 1
    assert len(metrics["experts"]["fraction_routed"]) == 4 and len(metrics["checkpoint"]["sha256"]) == 64
    assert 0 <= metrics["experts"]["router_input_share"] <= 1 and metrics["experts"]["router_logit_scale"] >= 0
    rows = (out / "confusion_matrix.csv").read_text().splitlines()
    assert len(rows) == 4 and sum(int(v) for row in rows[1:] for v in row.split(",")[1:]) == 9
    for name in EXPECTED_FILES - {"metrics.json", "report.md", "confusion_matrix.csv"}:
        image = np.asarray(Image.open(out / name).convert("L"), dtype=float)
        assert image.shape[0] >= 300 and image.shape[1] >= 400, name
        assert image.std() > 10, f"{name} looks blank"
    report = (out / "report.md").read_text()
    assert "## Protocol" in report and "| move_left |" in report and "## Experts" in report


def test_evaluation_is_deterministic(trained_run):
    options = EvaluationOptions(views=(2, 1), num_workers=0)
    first = evaluate_checkpoint(trained_run / "best.safetensors", options)
    second = evaluate_checkpoint(trained_run / "best.safetensors", options)
    assert np.array_equal(first.predictions.view_probs, second.predictions.view_probs)
    assert first.metrics["video_level"] == second.metrics["video_level"]


def test_all_splits_mean_and_std(trained_run, tmp_path, capsys):
    root = tmp_path / "runs"
    for split in (1, 2):
        shutil.copytree(trained_run, root / f"hmdb51-split{split}")
    assert main(["evaluate", "--all-splits", str(root), "--workers", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == [1, 2]
    values = summary["top1"]["values"]
    assert summary["top1"]["mean"] == pytest.approx(np.mean(values)) and summary["top1"]["std"] == pytest.approx(
        np.std(values)
    )
    assert (root / "evaluation" / "summary.md").exists() and (root / "evaluation" / "split2" / "metrics.json").exists()


@pytest.mark.parametrize("views", ["0x3", "ax1"])
def test_bad_views(trained_run, capsys, views):
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.safetensors"), "--views", views]) == 2
    err = capsys.readouterr().err
    assert "CLIPSxCROPS" in err and err.count("\n") == 1


def test_missing_checkpoint_and_wrong_class_list(trained_run, tmp_path, capsys):
    from actionmoe.acquire.synthetic import write_synthetic_hmdb51
    from actionmoe.config import SynthConfig

    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.safetensors")]) == 1
    assert "no checkpoint at" in capsys.readouterr().err
    write_synthetic_hmdb51(tmp_path / "arch", SynthConfig(classes=4, videos_per_class=4, frames=8, width=48, height=40))
    assert main(extract_argv(tmp_path / "four", tmp_path / "arch")) == 0
    capsys.readouterr()
    assert (
        main(["evaluate", "--checkpoint", str(trained_run / "best.safetensors"), "--root", str(tmp_path / "four")]) == 1
    )
    err = capsys.readouterr().err
    assert "knows 3 classes" in err and "has 4" in err and err.count("\n") == 1


def test_empty_test_split(trained_run, dataset_root, tmp_path, capsys):
    root = tmp_path / "no_test"
    shutil.copytree(dataset_root, root)
    for split_file in (root / "splits").rglob("*.txt"):
        split_file.write_text(split_file.read_text().replace(" 2 ", " 0 "))
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.safetensors"), "--root", str(root)]) == 1
    assert "test set of split 1" in capsys.readouterr().err


def test_the_report_embeds_its_plots_states_chance_and_the_training(trained_run, tmp_path, capsys):
    """A reader of report.md alone sees the plots, the chance level, how the run trained; epochs count from 1."""
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.safetensors"), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for plot in EXPECTED_FILES - {"metrics.json", "report.md", "confusion_matrix.csv"}:
        assert f"]({plot})" in report, plot
    assert "Chance level 0.333 (3 classes)" in report
    metrics = json.loads((out / "metrics.json").read_text())
    checkpoint = metrics["checkpoint"]
    assert checkpoint["epochs_trained"] == 2 and checkpoint["epochs_planned"] == 2
    assert 1 <= checkpoint["epoch"] <= 2  # 1-based, as the log lines and the report count
    assert f"epoch {checkpoint['epoch']} of 2" in report and "Training" in report
    assert "top-5" not in report  # 3 classes: top-5 is 1.0 whatever the model does
    assert metrics["video_level"]["chance_top1"] == pytest.approx(1 / 3)
    experts = report.index("## Experts")
    assert experts < report.index("**", experts) < report.index("normalised entropy")  # the verdict first


def test_evaluate_reports_the_routing_effect_and_the_direction_tests(trained_run, tmp_path, capsys):
    """The synthetic classes move_left / move_right are time-reversed twins: the direction tests apply."""
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(trained_run / "best.safetensors"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    effect = metrics["experts"]["routing_effect"]
    assert effect["top1_real_gates"] == pytest.approx(metrics["video_level"]["top1"])  # the head's own answers
    assert {"top1_uniform_gates", "top1_permuted_gates", "changed_by_permuted_gates"} <= set(effect)
    assert 0 < metrics["experts"]["class_expert_mi_p"] <= 1
    direction = metrics["direction"]
    assert direction["applies"] and direction["videos_with_twin"] == 6  # move_left and move_right, 3 test videos each
    assert 0 <= direction["reversal_moves_to_twin"] <= 1 and 0 <= direction["reversal_unchanged"] <= 1
    report = (out / "report.md").read_text()
    assert "with the gates of other videos" in report and "## Direction" in report and "twin accuracy" in report
