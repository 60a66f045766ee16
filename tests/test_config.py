import json

import pytest

from actionmoe.config import Config, builtin_config_names, config_to_dict, load_config, load_config_dict, save_config
from actionmoe.errors import ConfigError


def test_defaults_and_builtin_configs_load():
    assert load_config() == Config()
    assert {"demo", "hmdb51"} <= set(builtin_config_names())
    for name in builtin_config_names():
        assert isinstance(load_config(name), Config)


def test_overrides_are_typed():
    config = load_config("demo", ["data.split=2", "data.val_fraction=0.2", "data.root=/tmp/x y",
                                  "download.mirrors=http://a,http://b", "synth.solid=true", "data.val_fraction=1"])
    assert config.data.split == 2
    assert config.data.root == "/tmp/x y"
    assert config.download.mirrors == ("http://a", "http://b")
    assert config.synth.solid is True
    assert config.data.val_fraction == 1.0 and isinstance(config.data.val_fraction, float)


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
