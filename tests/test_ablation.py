"""actionmoe ablate on a tiny config: run folders, mean and std per variant, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from actionmoe.ablation import Variant, parse_variant
from actionmoe.errors import UsageError
from tests.helpers import TINY


def test_variant_syntax():
    assert parse_variant("moe=") == Variant("moe", ())
    assert parse_variant("linear=model.head=linear") == Variant("linear", ("model.head=linear",))
    taps = parse_variant('taps=model.motion_taps=["layer3","layer4"],model.motion_fusion=residual')
    assert taps.overrides == ('model.motion_taps=["layer3","layer4"]', "model.motion_fusion=residual")
    for bad in ("noequals", "=model.head=linear", "x=head=linear"):
        with pytest.raises(UsageError, match="--variant"):
            parse_variant(bad)


def ablate_command(root, out) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "actionmoe",
        "-q",
        "ablate",
        "--config",
        "demo",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--variant",
        "moe=",
        "--variant",
        "linear=model.head=linear",
        "--set",
        f"data.root={root}",
        "--set",
        "train.epochs=1",
    ]
    for item in TINY:
        command += ["--set", item]
    return command


@pytest.mark.slow
def test_two_variants_two_seeds_and_a_resume_after_a_kill(dataset_root, tmp_path):
    out = tmp_path / "ablation"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        ablate_command(dataset_root, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    finished = out / "runs" / "moe" / "seed0" / "evaluation" / "metrics.json"
    deadline = time.time() + 300
    while not finished.exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert finished.exists() and not (out / "ablation.json").exists()
    done_before = (out / "runs" / "moe" / "seed0" / "last.safetensors").stat().st_mtime_ns

    result = subprocess.run(ablate_command(dataset_root, out), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (out / "runs" / "moe" / "seed0" / "last.safetensors").stat().st_mtime_ns == done_before  # not retrained
    summary = json.loads((out / "ablation.json").read_text())
    assert list(summary["variants"]) == ["moe", "linear"] and summary["seeds"] == 2
    for name, variant in summary["variants"].items():
        assert [run["seed"] for run in variant["runs"]] == [0, 1]
        assert len(variant["top1"]["values"]) == 2 and variant["top1"]["std"] >= 0
        assert 0 <= variant["top1"]["mean"] <= 1 and variant["parameters"] > 0
        assert (variant["routing"] is None) == (name == "linear")
    assert summary["variants"]["moe"]["runs"][0]["trained_now"] is False
    assert summary["variants"]["moe"]["parameters"] > summary["variants"]["linear"]["parameters"]
    routing = summary["variants"]["moe"]["routing"]
    assert 0 <= routing["normalized_entropy_of_mean_gate"]["mean"] <= 1
    assert 0 <= routing["router_input_share"]["mean"] <= 1
    assert "| moe |" in (out / "ablation.md").read_text() and (out / "ablation.png").stat().st_size > 1000


def test_runs_evaluated_before_a_routing_figure_existed_show_it_as_na():
    from actionmoe.ablation import ROUTING_KEYS, ablation_markdown, summarize_ablation

    def run(seed: int, share: float | None) -> dict:
        routing = dict.fromkeys(ROUTING_KEYS, 0.5) | {"router_input_share": share, "router_logit_scale": share}
        return {
            "seed": seed,
            "top1": 0.5,
            "mean_class_accuracy": 0.5,
            "clips_per_s": 3.0,
            "parameters": 10,
            "routing": routing,
        }

    summary = summarize_ablation(
        {"old": [run(0, None), run(1, None)], "mixed": [run(0, None), run(1, 0.3)]}, {"old": [], "mixed": []}, "tiny", 2
    )
    assert summary["variants"]["old"]["routing"]["router_input_share"] is None
    assert summary["variants"]["mixed"]["routing"]["router_input_share"]["values"] == [0.3]
    rows = ablation_markdown(summary).splitlines()
    assert next(r for r in rows if r.startswith("| old |")).endswith("| n/a |")
    assert next(r for r in rows if r.startswith("| mixed |")).endswith("| 0.30 ± 0.00 |")


def test_each_variant_is_compared_with_the_first_as_far_as_its_seeds_allow():
    from actionmoe.ablation import ablation_markdown, summarize_ablation

    def run(seed: int, top1: float) -> dict:
        return {"seed": seed, "top1": top1, "mean_class_accuracy": top1, "clips_per_s": 3.0, "parameters": 10}

    runs = {
        "default": [run(s, v) for s, v in enumerate([0.50, 0.52, 0.54])],
        "recipe": [run(s, v) for s, v in enumerate([0.60, 0.62, 0.64])],
    }
    runs = {name: [{**r, "routing": None} for r in results] for name, results in runs.items()}
    summary = summarize_ablation(runs, {"default": [], "recipe": []}, "tiny", 3)
    assert summary["variants"]["default"]["against_first"] is None
    top1 = summary["variants"]["recipe"]["against_first"]["top1"]
    assert top1["difference"] == pytest.approx(0.10)
    assert top1["permutation_p"] == pytest.approx(0.10) == top1["smallest_possible_p"]  # as low as 3 vs 3 goes
    assert top1["pooled_std"] == pytest.approx(0.02)
    assert top1["detectable_difference"] == pytest.approx(0.0607, abs=1e-3)
    assert top1["ci95"] == pytest.approx([0.0547, 0.1453], abs=1e-3)  # t(4) 2.776 x 0.02 x sqrt(2/3)
    assert "| recipe | +0.100 (+0.055 to +0.145) | 0.10 (0.10) | 0.020 | 0.061 |" in ablation_markdown(summary)


def test_overrides_shared_by_every_variant_are_named_in_the_summary():
    """The router study runs every variant on top of `--set` overrides; ablation.md must say which."""
    from actionmoe.ablation import ablation_markdown, summarize_ablation

    result = {"seed": 0, "top1": 0.5, "mean_class_accuracy": 0.5, "clips_per_s": 3.0, "parameters": 10, "routing": None}
    base = ("model.shared_expert=false", "model.balance_weight=0.01")
    summary = summarize_ablation({"a": [result]}, {"a": []}, "tiny", 1, base)
    assert summary["base_overrides"] == list(base)
    heading = "Config `tiny` with model.shared_expert=false, model.balance_weight=0.01, 1 seeds"
    assert heading in ablation_markdown(summary)
    plain = summarize_ablation({"a": [result]}, {"a": []}, "tiny", 1)
    assert "Config `tiny`, 1 seeds" in ablation_markdown(plain)


def test_the_family_mi_null_for_random_leaders_is_near_0_47():
    """12 motion classes in 5 families, 4 experts: leaders drawn at random already give about 0.47 +- 0.10."""
    from actionmoe.ablation import family_mi_with_null
    from actionmoe.acquire.synthetic import MOTION_FAMILIES

    classes = sorted(MOTION_FAMILIES)
    metrics = {"video_level": {"per_class": {name: {"support": 15} for name in classes}}}
    leaders = np.eye(4)[np.arange(12) % 4]  # class c led by expert c mod 4
    result = family_mi_with_null({"class_expert_gate": leaders.tolist()}, metrics)
    assert result["family_expert_mi_random"] == pytest.approx(0.47, abs=0.02)
    assert result["family_expert_mi_p"] > 0.05  # this assignment is nothing chance would not give
    by_family = {family: index for index, family in enumerate(sorted(set(MOTION_FAMILIES.values())))}
    aligned = np.eye(5)[[by_family[MOTION_FAMILIES[name]] for name in classes]][:, :4]  # 4 families, 4 experts
    aligned[[i for i, name in enumerate(classes) if by_family[MOTION_FAMILIES[name]] == 4], 0] = 1.0
    assert family_mi_with_null({"class_expert_gate": aligned.tolist()}, metrics)["family_expert_mi_p"] < 0.05


def tiny_synthetic_ablation(out, *extra: str) -> list[str]:
    args = ["ablate", "--config", "demo", "--synthetic", "--seeds", "2", "--out", str(out), *extra]
    for item in [*TINY, "train.epochs=1", "synth.classes=3", "synth.videos_per_class=8", "synth.frames=10"]:
        args += ["--set", item]
    return args


@pytest.mark.slow
def test_vary_data_gives_each_seed_its_own_synthetic_dataset_and_holdout(tmp_path, capsys):
    from actionmoe.cli import main

    out = tmp_path / "ablation"
    assert main(tiny_synthetic_ablation(out, "--vary-data", "--variant", "moe=")) == 0
    summary = json.loads((out / "ablation.json").read_text())
    assert set(summary["data_per_seed"]) == {"0", "1"}
    configs = [json.loads((out / "runs" / "moe" / f"seed{s}" / "config.json").read_text()) for s in (0, 1)]
    assert [c["synth"]["seed"] for c in configs] == [0, 1] and [c["data"]["seed"] for c in configs] == [0, 1]
    assert configs[0]["data"]["root"] != configs[1]["data"]["root"]
    assert all((out / f"data-seed{s}" / "hmdb51").is_dir() for s in (0, 1))
    assert "its own synthetic dataset" in (out / "ablation.md").read_text()


def test_a_bad_variant_stops_ablate_before_any_dataset_is_written(tmp_path, capsys):
    from actionmoe.cli import main

    out = tmp_path / "ablation"
    assert main(tiny_synthetic_ablation(out, "--variant", "bad=model.no_such_key=1")) == 2
    err = capsys.readouterr().err
    assert "model.no_such_key" in err and err.count("\n") == 1
    assert not (out / "archives").exists() and not (out / "hmdb51").exists()
    plain = ["ablate", "--config", "demo", "--vary-data", "--variant", "a=", "--out", str(tmp_path / "x")]
    assert main(plain) == 2 and "--vary-data needs --synthetic" in capsys.readouterr().err


def test_the_plot_shows_every_seed_and_the_chance_line(tmp_path, monkeypatch):
    from matplotlib.collections import PathCollection

    from actionmoe import ablation

    def run(seed: int, top1: float) -> dict:
        return {"seed": seed, "top1": top1, "mean_class_accuracy": top1, "clips_per_s": 3.0, "parameters": 10,
                "routing": None, "chance_top1": 0.25}  # fmt: skip

    runs = {"a": [run(s, v) for s, v in enumerate([0.5, 0.6, 0.7])], "b": [run(s, v) for s, v in enumerate([0.3, 0.4])]}
    summary = ablation.summarize_ablation(runs, {"a": [], "b": []}, "tiny", 3)
    assert summary["chance_top1"] == 0.25
    drawn = {}
    real_save = ablation.save_figure

    def keep(fig, path, dpi=110):
        ax = fig.axes[0]
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]  # not the error bars
        drawn["dots"] = sorted(tuple(p) for c in scatters for p in c.get_offsets().tolist())
        drawn["lines"] = [line.get_ydata()[0] for line in ax.get_lines() if line.get_label() == "chance"]
        return real_save(fig, path, dpi)

    monkeypatch.setattr(ablation, "save_figure", keep)
    ablation.plot_ablation(summary, tmp_path / "ablation.png")
    assert sorted(round(y, 2) for _, y in drawn["dots"]) == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert drawn["lines"] == [0.25]


def test_twin_accuracy_is_summarised_and_compared_like_top1_where_the_dataset_has_twins():
    from actionmoe.ablation import ablation_markdown, summarize_ablation

    def run(seed: int, twin: float | None) -> dict:
        reversal = None if twin is None else 0.3
        return {"seed": seed, "top1": 0.4, "mean_class_accuracy": 0.4, "clips_per_s": 3.0, "parameters": 10,
                "routing": None, "twin_accuracy": twin, "reversal_moves_to_twin": reversal}  # fmt: skip

    runs = {"moe": [run(s, t) for s, t in enumerate([0.80, 0.85, 0.90])],
            "no_motion": [run(s, t) for s, t in enumerate([0.60, 0.65, 0.70])]}  # fmt: skip
    summary = summarize_ablation(runs, {"moe": [], "no_motion": []}, "tiny", 3)
    compared = summary["variants"]["no_motion"]["against_first"]["twin_accuracy"]
    assert compared["difference"] == pytest.approx(-0.20) and compared["permutation_p"] == pytest.approx(0.10)
    text = ablation_markdown(summary)
    assert "| no_motion | 0.650 ± 0.050 | 0.300 ± 0.000 |" in text and "(twin accuracy)" in text
    plain = summarize_ablation({"a": [run(0, None), run(1, None)]}, {"a": []}, "tiny", 2)
    assert plain["variants"]["a"]["twin_accuracy"] is None and "Direction" not in ablation_markdown(plain)
