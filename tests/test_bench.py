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
    assert row["peak_memory_mb_per_clip"] is None and "not measured (CPU)" in format_model_benchmark(result)


def test_bench_train_reports_the_end_to_end_ratio(capsys):
    from actionmoe.bench.train import (
        PLAIN,
        SMALL_DATA_RECIPE,
        TrainBenchSetting,
        format_train_benchmark,
        run_train_benchmark,
    )
    from actionmoe.config import ModelConfig

    config = ModelConfig(gate_hidden=16, expert_hidden=32, layer4_temporal_stride=False, motion_taps=("layer4",))
    setting = TrainBenchSetting("cpu", 8, 32, (36, 48), batch=2, workers=1, videos=6, classes=3, steps=2)
    result = run_train_benchmark(config, "cpu", repeats=1, setting=setting, augmentations=(PLAIN, SMALL_DATA_RECIPE))
    assert [row["augmentation"] for row in result["rows"]] == [PLAIN.name, SMALL_DATA_RECIPE.name]
    for row in result["rows"]:
        assert row["end_to_end_clips_per_s"] > 0 and row["model_only_clips_per_s"] > 0
        assert row["ratio"] == row["end_to_end_clips_per_s"] / row["model_only_clips_per_s"]
        assert 0 <= row["data_wait_share"] < 1 and row["peak_memory_mb_per_clip"] is None
        assert row["precision"] == "fp32" and row["skipped_videos"] == 0
    assert result["augmentations"][1]["mixup_alpha"] == 0.8
    text = format_train_benchmark(result)
    assert "ratio" in text and "not measured (CPU)" in text and result["machine"]["date"] in text
    assert "RandAugment 9" in text


def test_bench_predict_structure(trained_run, dataset_root):
    from actionmoe.bench.predict import format_predict_benchmark, run_predict_benchmark

    result = run_predict_benchmark(trained_run / "best.safetensors", dataset_root / "videos" / "move_up", repeats=1)
    measures = [row["measure"] for row in result["rows"]]
    assert measures[:2] == ["predict_many, 1 decoding process(es)", "predict_many, 2 decoding process(es)"]
    assert all(row["rate"] > 0 for row in result["rows"]) and result["videos"] == 10
    assert result["rows"][3]["max_probability_difference"] < 1e-4
    assert result["onnx_vs_torch"] == result["rows"][3]["rate"] / result["rows"][2]["rate"]
    assert "onnxruntime / PyTorch" in format_predict_benchmark(result)


def test_bench_stream_reports_each_engine_against_real_time(trained_run):
    from actionmoe.bench.stream import format_stream_benchmark, run_stream_benchmark
    from actionmoe.config import load_config

    result = run_stream_benchmark(load_config("demo"), trained_run / "best.safetensors", seconds=3.0)
    assert [row["engine"] for row in result["rows"]] == ["pytorch", "onnxruntime"]
    for row in result["rows"]:
        assert row["windows_answered"] + row["windows_skipped"] == 2  # 2 s windows every 1 s of a 3 s video
        assert 0 <= row["answered_in_time"] <= 1 and row["real_time_factor"] > 0
    assert "real_time_factor" in format_stream_benchmark(result) and result["checkpoint"].endswith("best.safetensors")


def test_side_share_counts_the_map_on_the_named_half():
    import numpy as np

    from actionmoe.bench.explain import side_share

    heat = np.zeros((2, 4, 6))
    heat[:, :, :3] = 3.0  # left half
    heat[:, :, 3:] = 1.0
    assert side_share(heat, "left") == 0.75 and side_share(heat, "right") == 0.25
    assert np.isnan(side_share(np.zeros((1, 2, 2)), "left"))


def test_a_one_sided_video_moves_only_inside_its_half_of_the_crop():
    import numpy as np

    from actionmoe.bench.explain import one_sided_video

    for side in ("left", "right"):
        for motion in ("move_up", "move_right", "orbit_cw"):
            video = one_sided_video(motion, side, np.random.default_rng(3), 12, (80, 106), 64)  # crop: x 21..85
            moving = np.abs(video.astype(int) - video[0].astype(int)).max(axis=(0, 3)) > 60  # [H, W]
            columns = np.nonzero(moving.any(axis=0))[0]
            weights = moving.sum(axis=0)[columns]
            on_side = weights[columns < 53].sum() if side == "left" else weights[columns >= 53].sum()
            assert on_side / weights.sum() > 0.85, (side, motion)
            assert columns.min() >= 21 - 8 and columns.max() <= 85 + 8  # inside the crop (give or take an edge)


def test_bench_explain_reports_both_sides_and_refuses_what_it_cannot_measure(
    capsys, trained_run, tmp_path, monkeypatch
):
    checkpoint = str(trained_run / "best.safetensors")
    assert main(["bench", "explain", "--checkpoint", checkpoint, "--videos", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["object on"] for row in result["rows"]] == ["left", "right"]
    for row in result["rows"]:
        assert row["videos"] == len(result["classes"]) == 3 and 0 <= row["top1"] <= 1
        assert row["empty maps"] == 3 or 0 <= row["share on object's half"] <= 1
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"refused by its name")
    assert main(["bench", "explain", "--checkpoint", str(onnx)]) == 2
    assert main(["bench", "explain", "--checkpoint", checkpoint, "--videos", "0"]) == 2
    assert "needs the PyTorch checkpoint" in capsys.readouterr().err
    monkeypatch.setattr("actionmoe.bench.explain.MOTIONS", {})  # as for a model of HMDB51's classes
    assert main(["bench", "explain", "--checkpoint", checkpoint]) == 2
    assert "needs a model trained on the synthetic motion classes" in capsys.readouterr().err
