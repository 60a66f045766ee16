"""Frozen configuration dataclasses, TOML loading and strict dotted overrides.

Only ``build_*`` functions and the CLI read these objects; modules take plain arguments.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from actionmoe.errors import ConfigError

ORIGINAL_HMDB51_HOST = "http://serre-lab.clps.brown.edu/wp-content/uploads/2013/10"
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class DownloadConfig:
    """Where HMDB51 comes from and how it is checked."""

    mirrors: tuple[str, ...] = (ORIGINAL_HMDB51_HOST,)
    videos_archive: str = "hmdb51_org.rar"
    splits_archive: str = "test_train_splits.rar"
    videos_md5: str = ""  # unknown for the original release: size and RAR integrity are checked instead
    splits_md5: str = "15e67781e70dcfbdce2d7dbb9b3344b5"
    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 60.0


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, which split, and how clips are made from it."""

    dataset: str = "hmdb51"  # hmdb51 | ucf101 | folder
    root: str = "data/hmdb51"
    split: int = 1
    val_fraction: float = 0.1
    val_on_test: bool = False  # parity with the original notebook; model selection then sees test
    on_missing: str = "error"  # error | skip
    seed: int = 0
    split_csv: str = ""  # folder layout only: optional CSV of path,subset
    clip_len: int = 16
    resize: tuple[int, int] = (128, 171)  # (H, W) at decode time, as the Kinetics weights expect
    crop_size: int = 112
    presample_frames: int = 32  # frames kept per video (uniformly) before clip sampling; 0 = all
    train_sampling: str = "random"  # random (one random frame per segment) | uniform
    flip: bool = True
    test_clips: int = 1
    test_crops: int = 1  # 1 (centre) or 3
    decoder: str = "auto"  # auto | torchcodec | opencv | pyav
    num_workers: int = 2
    cache: str = "auto"  # auto: ROOT/.actionmoe-cache when built | off | a folder
    normalize_on_device: bool = False  # loader yields uint8; the engine normalises on the device
    augment_on_device: bool = False  # training crop/flip on the device too (implies normalize_on_device)
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD


@dataclass(frozen=True)
class SynthConfig:
    """The built-in motion dataset written in HMDB51's on-disk form."""

    classes: int = 6
    videos_per_class: int = 20
    frames: int = 32
    width: int = 160
    height: int = 120
    fps: int = 25
    seed: int = 0
    rar_format: str = "rar4"  # rar4 | rar5
    solid: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Backbone, motion module and classification head."""

    weights: str = "none"  # none | kinetics400 | path to a .pth / .safetensors state dict
    layer4_temporal_stride: bool = True  # False keeps T=4 after layer4 (+5% FLOPs, weights still load)
    motion_taps: tuple[str, ...] = ("layer4",)  # any of layer2, layer3, layer4; [] = no motion module
    motion_reduction: int = 8
    motion_fusion: str = "gate"  # gate: X + X * (sigmoid(M) - 0.5) | residual: X + M
    motion_descriptor: bool = False  # also feed pooled |feature differences| to the head
    head: str = "moe"  # moe | linear
    feature_dropout: float = 0.3
    num_experts: int = 4
    top_k: int = 2
    gate_hidden: int = 256
    expert_hidden: int = 1024
    expert_dropout: float = 0.1
    noisy_gating: bool = True
    balance: str = "shazeer"  # shazeer (importance + load) | switch | none
    balance_weight: float = 0.01
    z_loss_weight: float = 0.001


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, precision, checkpointing and stopping."""

    epochs: int = 10
    batch_size: int = 8
    optimizer: str = "adamw"  # adam | adamw | sgd (Nesterov momentum)
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    backbone_lr_scale: float = 0.1
    weight_decay: float = 0.05
    scheduler: str = "plateau"  # plateau (on validation accuracy) | cosine (with warmup)
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    warmup_epochs: int = 1
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.0
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    accumulate: int = 1  # optimizer step every N batches
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    channels_last: bool = True  # channels_last_3d on CUDA
    compile: bool = False
    freeze_bn: bool = False  # BatchNorm in eval mode (small batches; exact DDP equivalence on CPU)
    sync_bn: bool = True  # SyncBatchNorm under multi-GPU DDP
    early_stop_patience: int = 0  # epochs without validation improvement; 0 = off
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def builtin_config_names() -> list[str]:
    """Names of the TOML files shipped inside the package (``demo``, ``hmdb51``...)."""
    folder = resources.files("actionmoe") / "configs"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_config(source: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Build a Config from defaults, an optional TOML file (path or built-in name) and overrides.

    Args:
        source: a TOML path, the name of a built-in config, or None for defaults.
        overrides: ``section.key=value`` strings applied after the file.
    """
    values: dict[str, Any] = _read_toml(source) if source else {}
    for item in overrides:
        key, raw = _split_override(item)
        _set_dotted(values, key, raw)
    return _build(Config, values, prefix="")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples become lists), for JSON/TOML output."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as JSON (read back with ``load_config_dict``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config_to_dict(config), indent=2) + "\n")


def load_config_dict(values: dict[str, Any]) -> Config:
    """Rebuild a Config from ``config_to_dict`` output (for example from a checkpoint)."""
    return _build(Config, values, prefix="")


def _read_toml(source: str | Path) -> dict[str, Any]:
    path = Path(source)
    if not path.exists() and str(source) in builtin_config_names():
        text = (resources.files("actionmoe") / "configs" / f"{source}.toml").read_text()
    elif path.is_file():
        text = path.read_text()
    else:
        raise ConfigError(
            f"config {source!s} not found: give a TOML path or one of {', '.join(builtin_config_names())}"
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {source!s} is not valid TOML: {exc}") from exc


def _split_override(item: str) -> tuple[str, str]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value")
    return key.strip(), raw.strip()


def _set_dotted(values: dict[str, Any], key: str, raw: str) -> None:
    parts = key.split(".")
    node = values
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = _RawOverride(raw)


@dataclass(frozen=True)
class _RawOverride:
    """A command-line value, parsed only once the target field's type is known."""

    text: str


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table of keys")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        valid = ", ".join(prefix + n for n in names)
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}; valid keys here: {valid}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if isinstance(value, dict):
        raise ConfigError(f"config key {key} is a value, not a section")
    if isinstance(value, _RawOverride):
        value = _parse_raw(value.text, hint)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(hint), key)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and type(value) is hint:
        return value
    raise ConfigError(f"config key {key} must be {_type_name(hint)}, got {value!r}")


def _coerce_tuple(value: Any, args: tuple, key: str) -> tuple:
    if isinstance(value, str) and args and args[0] is str:
        value = [value]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"config key {key} must be a list, got {value!r}")
    element_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
    if len(element_types) != len(value):
        raise ConfigError(f"config key {key} needs {len(element_types)} values, got {len(value)}")
    return tuple(_coerce(v, t, key) for v, t in zip(value, element_types))


def _parse_raw(text: str, hint: Any) -> Any:
    if hint is str:
        return text
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[0] is str and not text.startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}.get(
            hint.__name__, hint.__name__
        )
    if isinstance(hint, types.GenericAlias):
        return str(hint)
    return repr(hint)
