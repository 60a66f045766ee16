"""``actionmoe ablate``: train and test each variant of a config for several seeds, then compare.

Every run goes through the normal ``workflows.run_training`` (train, then test the best checkpoint)
into ``OUT/runs/<variant>/seed<N>``; a rerun skips finished runs and resumes a killed one. The
summary (``OUT/ablation.json``, ``ablation.md``, ``ablation.png``) gives per variant the test top-1
and mean class accuracy as mean and standard deviation over seeds, training clips/s, parameters,
and routing health at test time; and each variant against the first: the difference of means, the
exact permutation p and the smallest difference that many seeds could detect.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from actionmoe.acquire.synthetic import MOTION_FAMILIES
from actionmoe.config import Config, load_config
from actionmoe.errors import UsageError
from actionmoe.evaluation.metrics import normalized_mutual_information
from actionmoe.evaluation.stats import compare_arms
from actionmoe.files import pyplot, read_jsonl, save_figure, write_atomically, write_json
from actionmoe.models.recognizer import build_model
from actionmoe.workflows import run_training

log = logging.getLogger(__name__)

ROUTING_KEYS = (
    "normalized_entropy_of_mean_gate",
    "experts_under_5_percent",
    "class_expert_mi",
    "class_expert_mi_random",
    "router_input_share",
    "router_logit_scale",
    "family_expert_mi",
    "family_expert_mi_random",
    "family_expert_mi_p",
)
FAMILY_NULL_DRAWS = 2000


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]  # section.key=value


def parse_variant(text: str) -> Variant:
    """``NAME=KEY=VALUE[,KEY=VALUE]`` (``NAME=`` for the config as it is).

    A comma starts a new override only where ``section.key=`` follows, so list values such as
    ``model.motion_taps=["layer3","layer4"]`` keep their commas.
    """
    name, sep, rest = text.partition("=")
    if not sep or not re.fullmatch(r"[\w.-]+", name) or set(name) == {"."}:
        raise UsageError(f"--variant must look like NAME=section.key=value[,section.key=value], got {text!r}")
    overrides = tuple(part for part in re.split(r",(?=\s*[\w]+\.[\w]+=)", rest) if part.strip())
    for override in overrides:
        if not re.match(r"\s*[\w]+\.[\w]+=", override):
            raise UsageError(f"--variant {name}: {override!r} is not section.key=value")
    return Variant(name, overrides)


def check_variants(source: str | Path, variants: list[Variant], seeds: int, base: tuple[str, ...] = ()) -> None:
    """Every variant's overrides are valid config (before any dataset is written or run started).

    Raises:
        UsageError: no seed, no variant or two variants of one name; ConfigError: an unknown key or value.
    """
    if seeds < 1 or not variants or len({v.name for v in variants}) != len(variants):
        raise UsageError("ablate needs at least one seed and distinct variant names")
    for variant in variants:
        load_config(source, [*base, *variant.overrides])


def run_ablation(
    source: str | Path,
    variants: list[Variant],
    seeds: int,
    out: Path,
    base: tuple[str, ...] = (),
    per_seed: dict[int, tuple[str, ...]] | None = None,
) -> dict:
    """Train and test every (variant, seed) not finished yet; write and return the summary.

    Args:
        source: the config file or built-in name every variant starts from.
        variants: the variants, each a list of overrides on top of ``base``.
        seeds: seeds 0 .. seeds-1 (``train.seed``; the data split and clip sampling stay fixed unless
            ``per_seed`` changes them).
        base: overrides shared by every variant (the dataset root, for example).
        per_seed: overrides of each seed shared by every variant (its own synthetic dataset and holdout).
    """
    check_variants(source, variants, seeds, base)
    per_seed = per_seed or {}
    configs = {
        v.name: [
            load_config(source, [*base, *per_seed.get(s, ()), *v.overrides, f"train.seed={s}"]) for s in range(seeds)
        ]
        for v in variants
    }  # every override is validated before the first run starts
    runs = {
        name: [run_one(config, out / "runs" / name / f"seed{config.train.seed}") for config in per_seed]
        for name, per_seed in configs.items()
    }
    summary = summarize_ablation(runs, {v.name: list(v.overrides) for v in variants}, source, seeds, base)
    summary["data_per_seed"] = {str(seed): list(overrides) for seed, overrides in per_seed.items()}
    write_json(out / "ablation.json", summary)
    write_atomically(out / "ablation.md", ablation_markdown(summary))
    plot_ablation(summary, out / "ablation.png")
    return summary


def run_one(config: Config, run_dir: Path) -> dict:
    """One run's figures: test accuracy, training speed, parameters, routing health."""
    outcome = run_training(config, run_dir)
    metrics = outcome.test_metrics
    rows = read_jsonl(run_dir / "metrics.jsonl")
    experts = metrics["experts"]
    family_keys = {"family_expert_mi", "family_expert_mi_random", "family_expert_mi_p"}
    routing = {key: experts.get(key) for key in ROUTING_KEYS if key not in family_keys} if experts else None
    if routing is not None:  # older runs lack some keys: None
        routing.update(family_mi_with_null(experts, metrics))
    model = build_model(replace(config.model, weights="none"), len(metrics["video_level"]["per_class"]))
    return {
        "run_dir": str(run_dir),
        "seed": config.train.seed,
        "trained_now": outcome.trained,
        "top1": metrics["video_level"]["top1"],
        "chance_top1": 1 / len(metrics["video_level"]["per_class"]),
        "twin_accuracy": metrics.get("direction", {}).get("twin_accuracy"),  # None without time-reversed twins
        "reversal_moves_to_twin": metrics.get("direction", {}).get("reversal_moves_to_twin"),
        "mean_class_accuracy": metrics["video_level"]["mean_class_accuracy"],
        "clips_per_s": float(np.mean([row["clips_per_s"] for row in rows])) if rows else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "routing": routing,
    }


def family_mi_with_null(experts: dict, metrics: dict, draws: int = FAMILY_NULL_DRAWS, seed: int = 0) -> dict:
    """Normalised MI between a class's motion family and the expert leading it, with its class-level null.

    The null draws each class's leader at random from the experts (synthetic motions only).

    With 12 classes the statistic has effectively 12 points, so chance alone gives about 0.47 ± 0.10
    (4 experts, the 5 motion families); ``family_expert_mi_p`` is the share of ``draws`` random
    leader assignments (counting the observed one) that reach the observed value.
    """
    none = {"family_expert_mi": None, "family_expert_mi_random": None, "family_expert_mi_p": None}
    classes = list(metrics["video_level"]["per_class"])
    if not all(name in MOTION_FAMILIES for name in classes):
        return none
    per_class = np.array(experts["class_expert_gate"])  # [C, E] mean gate weight
    support = [metrics["video_level"]["per_class"][name]["support"] for name in classes]
    families = np.repeat([MOTION_FAMILIES[name] for name in classes], support)
    observed = normalized_mutual_information(families, np.repeat(per_class.argmax(axis=1), support))
    if draws == 0:
        return {**none, "family_expert_mi": observed}
    rng = np.random.default_rng(seed)
    null = [
        normalized_mutual_information(families, np.repeat(rng.integers(0, per_class.shape[1], len(classes)), support))
        for _ in range(draws)
    ]
    return {
        "family_expert_mi": observed,
        "family_expert_mi_random": float(np.mean(null)),
        "family_expert_mi_p": (1 + sum(value >= observed - 1e-12 for value in null)) / (1 + draws),
    }


def _mean_std(values: list[float | None]) -> dict | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {
        "mean": float(np.mean(present)),
        "std": float(np.std(present, ddof=1)) if len(present) > 1 else 0.0,
        "values": present,
    }


def summarize_ablation(
    runs: dict[str, list[dict]], overrides: dict[str, list[str]], source, seeds: int, base: tuple[str, ...] = ()
) -> dict:
    """Per variant: mean and sample standard deviation over seeds of every figure.

    ``base`` are the overrides every variant starts from (named in the summary)."""
    variants = {}
    for name, results in runs.items():
        routed = [r["routing"] for r in results if r["routing"] is not None]
        variants[name] = {
            "overrides": overrides[name],
            "top1": _mean_std([r["top1"] for r in results]),
            "mean_class_accuracy": _mean_std([r["mean_class_accuracy"] for r in results]),
            **{key: _mean_std([r.get(key) for r in results]) for key in DIRECTION_KEYS},
            "clips_per_s": _mean_std([r["clips_per_s"] for r in results]),
            "parameters": results[0]["parameters"],
            "routing": {key: _mean_std([r[key] for r in routed]) for key in ROUTING_KEYS} if routed else None,
            "runs": results,
        }
    first = next(iter(variants))
    for name, variant in variants.items():
        variant["against_first"] = None if name == first else _against(variants[first], variant)
    return {
        "config": str(source),
        "base_overrides": list(base),
        "seeds": seeds,
        "variants": variants,
        "baseline": first,
        "std": "sample standard deviation over seeds (ddof=1)",
        "chance_top1": next((r["chance_top1"] for rs in runs.values() for r in rs if "chance_top1" in r), None),
    }


DIRECTION_KEYS = ("twin_accuracy", "reversal_moves_to_twin")  # the direction tests, on datasets with twins
COMPARED = {"top1": "test top-1", "mean_class_accuracy": "mean class accuracy", "twin_accuracy": "twin accuracy"}


def _against(baseline: dict, variant: dict) -> dict:
    """Top-1, mean class accuracy and (with twins) twin accuracy of ``variant`` against ``baseline``
    (``evaluation.stats.compare_arms``)."""
    return {
        key: compare_arms(baseline[key]["values"], variant[key]["values"])
        for key in COMPARED
        if baseline.get(key)
        and variant.get(key)
        and len(baseline[key]["values"]) > 1
        and len(variant[key]["values"]) > 1
    }


def _fmt(stat: dict | None, digits: int = 3) -> str:
    return "n/a" if stat is None else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def ablation_markdown(summary: dict) -> str:
    base = summary.get("base_overrides") or []
    config = f"Config `{summary['config']}`" + (f" with {', '.join(base)}" if base else "")
    data = (
        " Each seed trained and tested on its own synthetic dataset and holdout (synth.seed, data.seed)."
        if summary.get("data_per_seed")
        else ""
    )
    lines = [
        "# Ablation",
        "",
        f"{config}, {summary['seeds']} seeds per variant; mean ± {summary['std']}.{data}",
        "",
        "| variant | overrides | test top-1 | mean class acc. | train clips/s | parameters | gate entropy | "
        "experts < 5% | class-expert MI (random) | family-expert MI (random leaders) | router input share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in summary["variants"].items():
        routing = v["routing"] or {}
        mi = routing.get("class_expert_mi")
        mi_text = "n/a" if mi is None else f"{_fmt(mi, 2)} ({routing['class_expert_mi_random']['mean']:.2f})"
        lines.append(
            f"| {name} | {', '.join(v['overrides']) or '(config)'} | {_fmt(v['top1'])} | "
            f"{_fmt(v['mean_class_accuracy'])} | {_fmt(v['clips_per_s'], 1)} | {v['parameters']:,} | "
            f"{_fmt(routing.get('normalized_entropy_of_mean_gate'), 2)} | "
            f"{_fmt(routing.get('experts_under_5_percent'), 1)} | {mi_text} | "
            f"{_family_text(routing)} | {_fmt(routing.get('router_input_share'), 2)} |"
        )
    return "\n".join(lines + _direction_lines(summary) + _comparison_lines(summary)) + "\n"


def _family_text(routing: dict) -> str:
    null = routing.get("family_expert_mi_random")
    text = _fmt(routing.get("family_expert_mi"), 2)
    return text if null is None else f"{text} ({null['mean']:.2f})"


def _direction_lines(summary: dict) -> list[str]:
    """Twin accuracy and the reversal test per variant, for datasets whose classes come in time-reversed twins."""
    variants = {name: v for name, v in summary["variants"].items() if v.get("twin_accuracy")}
    if not variants:
        return []
    lines = [
        "",
        "Direction (time-reversed twin classes): twin accuracy = of the test videos predicted inside the right "
        "pair, the share on the right side (0.5 = blind to frame order); reversed = the share of twin videos "
        "whose prediction moves to the twin when the clip is played backwards.",
        "",
        "| variant | twin accuracy | reversed: to the twin |",
        "|---|---|---|",
    ]
    for name, v in variants.items():
        lines.append(f"| {name} | {_fmt(v['twin_accuracy'])} | {_fmt(v.get('reversal_moves_to_twin'))} |")
    return lines


def _comparison_lines(summary: dict) -> list[str]:
    """Each variant against the first: what the seeds can and cannot show."""
    return [line for key in COMPARED if key != "mean_class_accuracy" for line in _comparison_table(summary, key)]


def _comparison_table(summary: dict, key: str) -> list[str]:
    rows = [(name, v["against_first"].get(key)) for name, v in summary["variants"].items() if v.get("against_first")]
    rows = [(name, c) for name, c in rows if c]
    if not rows:
        return []
    lines = [
        "",
        f"Against `{summary['baseline']}` ({COMPARED[key]}): the difference of means with its two-sample t 95% "
        "interval (pooled std), the exact two-sided permutation p "
        "(its smallest possible value at these seed counts in brackets), the pooled seed standard deviation and "
        "the smallest true difference these seeds detect with 80% power at alpha 0.05 (two-sample t).",
        "",
        "| variant | difference (95% interval) | permutation p | pooled std | detectable difference |",
        "|---|---|---|---|---|",
    ]
    for name, c in rows:
        low, high = c["ci95"]
        lines.append(
            f"| {name} | {c['difference']:+.3f} ({low:+.3f} to {high:+.3f}) | {c['permutation_p']:.2f} "
            f"({c['smallest_possible_p']:.2f}) | {c['pooled_std']:.3f} | {c['detectable_difference']:.3f} |"
        )
    return lines


def plot_ablation(summary: dict, path: Path) -> None:
    """Test top-1 per variant: the mean as a bar with the seed-to-seed standard deviation, every seed as a dot,
    and the chance level as a line."""
    plt = pyplot()
    names = list(summary["variants"])
    means = [summary["variants"][n]["top1"]["mean"] for n in names]
    stds = [summary["variants"][n]["top1"]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.6))
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="#9ab5d3", label="mean ± std")
    for index, name in enumerate(names):
        seeds = summary["variants"][name]["top1"]["values"]
        offsets = np.linspace(-0.18, 0.18, len(seeds)) if len(seeds) > 1 else np.zeros(1)
        ax.scatter(index + offsets, seeds, s=14, color="#1f3f66", zorder=3, label="one seed" if index == 0 else None)
    if summary.get("chance_top1"):
        ax.axhline(summary["chance_top1"], color="#C44E52", linestyle="--", linewidth=1, label="chance")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("test top-1")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{summary['config']}: mean ± std over {summary['seeds']} seeds")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
