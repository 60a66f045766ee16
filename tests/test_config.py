import json
import subprocess
import sys
import tomllib

import pytest

from actionmoe.cli import main
from actionmoe.config import (
    Config,
    builtin_config_names,
    config_to_dict,
    config_to_toml,
    load_config,
    load_config_dict,
    save_config,
)
from actionmoe.errors import ConfigError


def test_defaults_and_builtin_configs_load():
    assert load_config() == Config()
    assert {"demo", "hmdb51"} <= set(builtin_config_names())
    for name in builtin_config_names():
        assert isinstance(load_config(name), Config)


def test_overrides_are_typed():
    config = load_config(
        "demo",
        [
            "data.split=2",
            "data.val_fraction=0.2",
            "data.root=/tmp/x y",
            "download.mirrors=http://a,http://b",
            "synth.solid=true",
            "train.lr=1",
        ],
    )
    assert config.data.split == 2
    assert config.data.root == "/tmp/x y"
    assert config.download.mirrors == ("http://a", "http://b")
    assert config.synth.solid is True
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)


def test_string_field_keeps_numbers_verbatim():
    assert load_config(None, ["data.root=123"]).data.root == "123"


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.epochs=3", "unknown config key training"),
        ("data.epochs=3", "unknown config key data.epochs; valid keys here: data.dataset"),
        ("data.split=two", "data.split must be an integer"),
        ("data.split=1.5", "data.split must be an integer"),
        ("synth.solid=1", "synth.solid must be true or false"),
        ("data", "must look like section.key=value"),
        ("data.split.x=1", "is a value, not a section"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(None, [override])


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[data]\nsplitt = 2\n")
    with pytest.raises(ConfigError, match="unknown config key data.splitt"):
        load_config(path)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[data\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_resolved_config_round_trips(tmp_path):
    config = load_config("demo", ["data.split=3"])
    save_config(config, tmp_path / "config.json")
    assert load_config_dict(json.loads((tmp_path / "config.json").read_text())) == config
    assert config_to_dict(config)["data"]["split"] == 3


BAD_VALUES = [
    ("model.head=foo", "model.head must be one of moe, linear; got 'foo'"),
    ("model.top_k=9", "model.top_k must be between 1 and model.num_experts (4)"),
    ("model.motion_fusion=sum", "model.motion_fusion must be one of gate, residual; got 'sum'"),
    ("model.balance=x", "model.balance must be one of shazeer, switch, none; got 'x'"),
    ('model.motion_taps=["layer9"]', "model.motion_taps must be one of layer2, layer3, layer4; got 'layer9'"),
    ("model.motion_taps=layer3,layer3", "model.motion_taps must not repeat a stage"),
    ("model.num_experts=0", "model.num_experts must be at least 1"),
    ("model.feature_dropout=1.5", "model.feature_dropout must be in [0, 1)"),
    ("data.train_sampling=bogus", "data.train_sampling must be one of random, uniform; got 'bogus'"),
    ("data.test_crops=2", "data.test_crops must be one of 1, 3; got 2"),
    ("data.decoder=ffmpeg", "data.decoder must be one of auto, opencv, pyav, torchcodec"),
    ("data.dataset=kinetics", "data.dataset must be one of hmdb51, hmdb51_jsonl, ucf101, folder"),
    ("data.crop_size=300", "data.crop_size must be positive and fit data.resize [128, 171]"),
    ("data.val_fraction=1.5", "data.val_fraction must be between 0 and 1 (exclusive)"),
    ("data.clip_len=0", "data.clip_len must be at least 1"),
    ("data.num_workers=-1", "data.num_workers must be 0 or more"),
    ("model.gate_init_std=-0.1", "model.gate_init_std must be 0 or more"),
    ("model.noise_std_start=0.01", "model.noise_std_start must be above 0.01"),
    ("train.router_lr_scale=-1", "train.router_lr_scale must be 0 or more"),
    ("data.split=4", "data.split must be 1, 2 or 3"),
    ("train.optimizer=sgdd", "train.optimizer must be one of adamw, adam, sgd; got 'sgdd'"),
    ("train.scheduler=step", "train.scheduler must be one of plateau, cosine; got 'step'"),
    ("train.precision=fp8", "train.precision must be one of auto, fp32, bf16"),
    ("train.batch_size=0", "train.batch_size must be at least 1"),
    ("train.lr=0", "train.lr must be positive"),
    ("train.device=bogus", "train.device must be one of auto, cpu, cuda, cuda:N"),
    ("synth.classes=13", "synth.classes must be 2 to 12"),
    ("download.videos_md5=xyz", "download.videos_md5 must be empty or 32 hexadecimal digits"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES)
def test_bad_values_are_one_line_usage_errors_through_the_cli(capsys, override, message):
    assert main(["config", "show", "--config", "hmdb51", "--set", override]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"actionmoe: error: config key {message}") and err.count("\n") == 1


@pytest.mark.slow
def test_a_bad_value_in_a_command_that_does_work_is_refused_before_any_work(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "actionmoe",
            "train",
            "--root",
            str(tmp_path),
            "--out",
            str(tmp_path / "run"),
            "--set",
            "model.head=foo",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "actionmoe: error: config key model.head must be one of moe, linear; got 'foo'"
    assert not (tmp_path / "run").exists()


def test_config_show_prints_toml_that_loads_back(capsys, tmp_path):
    assert main(["config", "show", "--config", "demo", "--set", "model.top_k=1", "--set", "data.test_crops=3"]) == 0
    text = capsys.readouterr().out
    tomllib.loads(text)
    (tmp_path / "shown.toml").write_text(text)
    shown = load_config(tmp_path / "shown.toml")
    assert shown == load_config("demo", ["model.top_k=1", "data.test_crops=3"])
    assert config_to_toml(shown) == text


def test_the_hmdb51_recipe_pins_every_head_and_motion_key():
    """A later change of a default cannot silently change the real recipe."""
    import tomllib
    from importlib import resources

    from actionmoe.runtime.compat import MOE_HEAD_KEYS, MOTION_MODULE_KEYS

    text = (resources.files("actionmoe") / "configs" / "hmdb51.toml").read_text()
    pinned = set(tomllib.loads(text)["model"])
    assert set(MOE_HEAD_KEYS) | set(MOTION_MODULE_KEYS) | {"motion_taps", "head", "feature_dropout"} <= pinned


def test_the_notebook_preset_builds_the_fixed_noise_router():
    from actionmoe.models.recognizer import build_model

    config = load_config("notebook", ["model.weights=none"])
    assert not config.model.noise_std_learned and config.model.noise_std_start == 1.0
    assert (config.train.optimizer, config.train.scheduler, config.model.shared_expert) == ("adam", "plateau", False)
    head = build_model(config.model, 51).head
    assert head.router.w_noise is None and head.router.fixed_std == 1.0
