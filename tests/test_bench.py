"""Benchmarks run and report their structure; they assert no timing."""

import json

from actionmoe.cli import main


def test_bench_data_json(capsys, shared_data):
    assert (
        main(["bench", "data", "--videos", str(shared_data / "videos"), "--count", "2", "--repeats", "1", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    methods = {(r["workload"], r["method"], r["workers"]) for r in result["rows"]}
    assert ("hmdb-like 320x240 avi", "opencv decode", 1) in methods
    assert ("hmdb-like 320x240 avi", "cache read", 1) in methods
    assert ("real videos", "pyav decode", 1) in methods
    assert all(r["clips_per_s"] > 0 for r in result["rows"])
    assert {"cache_vs_best_cold_decode", "best_decoder"} <= set(result["ratios"])
    assert result["machine"]["cores"] >= 1 and result["machine"]["date"]


def test_bench_model_structure():
    from actionmoe.bench.model import Setting, format_model_benchmark, run_model_benchmark
    from actionmoe.config import ModelConfig

    config = ModelConfig(gate_hidden=16, expert_hidden=32)
    result = run_model_benchmark(config, "cpu", repeats=1, settings=[Setting("cpu", 1, 16, 32)])
    (row,) = result["rows"]
    assert row["setting"] == "cpu 16x32x32 batch 1"
    assert row["baseline_clips_per_s"] > 0 and row["model_clips_per_s"] > 0
    assert row["overhead"] == row["baseline_clips_per_s"] / row["model_clips_per_s"] - 1
    assert "overhead" in format_model_benchmark(result)
