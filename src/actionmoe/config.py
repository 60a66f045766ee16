"""Frozen configuration dataclasses, TOML loading and strict dotted overrides.

Only ``build_*`` functions, ``Preprocessing.from_config``, the CLI and the whole jobs
(``workflows``, ``ablation``) read these objects; modules take plain arguments whose defaults are
these dataclasses' defaults. Reading a config saved by an earlier version goes through
``runtime.compat.saved_config``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from actionmoe.errors import ConfigError
from actionmoe.files import write_json

ORIGINAL_HMDB51_HOST = "http://serre-lab.clps.brown.edu/wp-content/uploads/2013/10"
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
SYNTH_MAX_CLASSES = 12  # motions the synthetic generator draws
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
NOISE_STD_FLOOR = 0.01  # the router's noise std is softplus(...) + this floor (Shazeer et al.)
SHAZEER_NOISE_STD = math.log(2.0) + NOISE_STD_FLOOR  # softplus(0) + floor: the std of a zero-initialised W_noise


@dataclass(frozen=True)
class DownloadConfig:
    """Where HMDB51 comes from and how it is checked."""

    mirrors: tuple[str, ...] = (ORIGINAL_HMDB51_HOST,)
    videos_archive: str = "hmdb51_org.rar"
    splits_archive: str = "test_train_splits.rar"
    videos_md5: str = ""  # unknown for the original release: size and RAR integrity are checked instead
    splits_md5: str = "15e67781e70dcfbdce2d7dbb9b3344b5"
    videos_members: int = 51  # class archives inside the video archive; 0 = do not check
    splits_members: int = 153  # split files inside the split archive; 0 = do not check
    splits: Literal["download", "builtin"] = "download"  # builtin: the official split files shipped in the package
    retries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 60.0  # a server silent this long fails the attempt
    deadline_s: float = 21600.0  # a whole file must arrive within this (6 h)
    min_bytes_per_s: float = 10000.0  # slower than this over stall_window_s: the transfer is stuck
    stall_window_s: float = 60.0
    max_extract_gb: float = 0.0  # what one archive may write; 0 = the free disk space less a margin
    max_compression_ratio: float = 100.0  # declared size / archive size above this is refused (bombs)

    def __post_init__(self) -> None:
        _require(self.retries >= 0, "download.retries", "must be 0 or more")
        for key in ("videos_members", "splits_members", "min_bytes_per_s", "max_extract_gb"):
            _require(getattr(self, key) >= 0, f"download.{key}", "must be 0 or more")
        for key in ("deadline_s", "stall_window_s", "max_compression_ratio"):
            _require(getattr(self, key) > 0, f"download.{key}", "must be positive")
        _require(0 <= self.backoff_s <= 3600, "download.backoff_s", "must be between 0 and 3600 seconds")
        _require(0 < self.timeout_s <= 86400, "download.timeout_s", "must be positive and at most 86400 seconds")
        for mirror in self.mirrors:
            parts = urllib.parse.urlsplit(mirror)
            _require(
                parts.scheme in ("http", "https") and bool(parts.hostname),
                "download.mirrors",
                f"must be http:// or https:// URLs, got {mirror!r}",
            )
        for key in ("videos_md5", "splits_md5"):
            value = getattr(self, key)
            _require(
                value == "" or re.fullmatch(r"[0-9a-fA-F]{32}", value) is not None,
                f"download.{key}",
                "must be empty or 32 hexadecimal digits",
            )


# Bounds on what a config (or a checkpoint's recorded config, or an export's sidecar) may ask of
# memory: one video's test views are at most MAX_TEST_CLIPS x 3 crops of MAX_FRAMES frames of
# MAX_SIDE x MAX_SIDE, and decoding holds MAX_FRAMES resized frames.
MAX_SIDE = 1024
MAX_FRAMES = 512
MAX_TEST_CLIPS = 32
MAX_VIDEO_BYTES = 2 << 30  # one video's float test views plus its presampled uint8 frames


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, which split, and how clips are made from it."""

    dataset: Literal["hmdb51", "hmdb51_jsonl", "ucf101", "folder", "list"] = "hmdb51"  # hmdb51: either HMDB51 layout
    root: str = "data/hmdb51"
    split: int = 1
    val_fraction: float = 0.1
    val_on_test: bool = False  # parity with the original notebook; model selection then sees test
    on_missing: Literal["error", "skip"] = "error"
    seed: int = 0
    split_csv: str = ""  # folder layout only: optional CSV of path,subset
    train_list: str = ""  # dataset "list": one video a line, "relative/path.mp4 LABEL" (see data/lists.py)
    val_list: str = ""  # optional; empty: a stratified holdout of train (data.val_fraction)
    test_list: str = ""
    classes_file: str = ""  # optional: class names in label order, so list labels may be integer indices
    clip_len: int = 16
    resize: tuple[int, int] = (128, 171)  # (H, W) at decode time, as the Kinetics weights expect
    crop_size: int = 112
    presample_frames: int = 32  # frames kept per video (uniformly) before clip sampling; 0 = all
    train_sampling: Literal["random", "uniform"] = "random"  # random: one random frame per segment
    flip: bool = True
    crop_scale: tuple[float, ...] = ()  # [min, max] area fraction: scale-jittered random resized crops; [] = plain
    augment: Literal["none", "randaugment", "trivialaugment"] = "none"  # one draw per clip, all its frames alike
    augment_magnitude: int = 9  # RandAugment's magnitude, 0-30 (TrivialAugment draws its own)
    test_clips: int = 1
    test_crops: Literal[1, 3] = 1  # 1 (centre) or 3 (start, centre, end)
    decoder: Literal["auto", "opencv", "pyav", "torchcodec"] = "auto"
    num_workers: int = 2
    cache: str = "auto"  # auto: ROOT/.actionmoe-cache when built | off | a folder
    normalize_on_device: bool = False  # loader yields uint8; the engine normalises on the device
    augment_on_device: bool = False  # training crop/flip on the device too (implies normalize_on_device)
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD

    def __post_init__(self) -> None:
        _require(self.split in (1, 2, 3), "data.split", "must be 1, 2 or 3")
        _require(
            self.dataset != "list" or bool(self.train_list and self.test_list),
            "data.train_list / data.test_list",
            'must both name a list file when data.dataset = "list"',
        )
        _require(
            self.val_on_test or 0 < self.val_fraction < 1,
            "data.val_fraction",
            "must be between 0 and 1 (exclusive), unless data.val_on_test = true",
        )
        _require(1 <= self.clip_len <= MAX_FRAMES, "data.clip_len", f"must be at least 1 and at most {MAX_FRAMES}")
        _require(
            min(self.resize) >= 1 and max(self.resize) <= MAX_SIDE,
            "data.resize",
            f"must be two sizes [H, W] between 1 and {MAX_SIDE}",
        )
        _require(
            1 <= self.crop_size <= min(self.resize),
            "data.crop_size",
            f"must be positive and fit data.resize {list(self.resize)}",
        )
        _require(
            0 <= self.presample_frames <= MAX_FRAMES,
            "data.presample_frames",
            f"must be 0 (all frames) or up to {MAX_FRAMES}",
        )
        _require(
            1 <= self.test_clips <= MAX_TEST_CLIPS,
            "data.test_clips",
            f"must be at least 1 and at most {MAX_TEST_CLIPS}",
        )
        _require(
            self.video_bytes() <= MAX_VIDEO_BYTES,
            "data.test_clips/test_crops/clip_len/crop_size/resize/presample_frames",
            f"ask for {self.video_bytes() / 2**30:.1f} GiB per video; at most {MAX_VIDEO_BYTES / 2**30:.0f} GiB",
        )
        _require(self.num_workers >= 0, "data.num_workers", "must be 0 or more")
        _require(
            not self.crop_scale or (len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1),
            "data.crop_scale",
            "must be [] (plain crops) or [min, max] with 0 < min <= max <= 1",
        )
        _require(0 <= self.augment_magnitude <= 30, "data.augment_magnitude", "must be between 0 and 30")
        _require(min(self.std) > 0, "data.std", "must be three positive numbers")
        _require(self.cache != "" and self.root != "", "data.cache / data.root", "must not be empty")

    def video_bytes(self) -> int:
        """Memory one test video takes: its float views [clips x crops, 3, T, crop, crop] and uint8 frames."""
        views = self.test_clips * self.test_crops * self.clip_len * self.crop_size**2 * 3 * 4
        frames = max(self.presample_frames, self.clip_len) * self.resize[0] * self.resize[1] * 3
        return views + frames


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
    rar_format: Literal["rar4", "rar5"] = "rar4"
    solid: bool = False

    def __post_init__(self) -> None:
        _require(2 <= self.classes <= SYNTH_MAX_CLASSES, "synth.classes", f"must be 2 to {SYNTH_MAX_CLASSES}")
        _require(self.videos_per_class >= 4, "synth.videos_per_class", "must be at least 4 (70/30 split per class)")
        _require(self.frames >= 1 and self.fps >= 1, "synth.frames / synth.fps", "must be positive")
        _require(min(self.width, self.height) >= 16, "synth.width / synth.height", "must be at least 16")


@dataclass(frozen=True)
class ModelConfig:
    """Backbone, motion module and classification head."""

    weights: str = "none"  # none | kinetics400 | path to a .pth / .safetensors state dict
    init_from: str = ""  # an actionmoe checkpoint (or backbone state dict) a new run starts from (engine/finetune.py)
    layer4_temporal_stride: bool = True  # False keeps T=4 after layer4 (+5% FLOPs, weights still load)
    motion_taps: tuple[Literal["layer2", "layer3", "layer4"], ...] = ("layer4",)  # [] = no motion module
    motion_reduction: int = 8
    motion_fusion: Literal["gate", "residual"] = "gate"  # gate: X + X * (sigmoid(M) - 0.5); residual: X + M
    motion_descriptor: bool = False  # also feed pooled |feature differences| to the head
    head: Literal["moe", "linear"] = "moe"
    feature_dropout: float = 0.3
    num_experts: int = 4
    top_k: int = 2
    gate_hidden: int = 256
    expert_hidden: int = 1024
    expert_dropout: float = 0.1
    noisy_gating: bool = True
    # The routing defaults measured best in docs/ablation.md; Shazeer's reference is gate_init_std = 0,
    # noise_std_start = SHAZEER_NOISE_STD, shared_expert = false, balance_weight = 0.01.
    gate_init_std: float = 0.02  # > 0: the gate's output layer starts normal with this std; 0: at zero (Shazeer)
    noise_std_start: float = 0.1  # the learned noise std at initialisation (Shazeer: softplus(0) + 0.01)
    noise_std_learned: bool = True  # false: the original notebook's router, a fixed noise std = noise_std_start
    shared_expert: bool = True  # one more expert that every video uses at full weight, beside the routed ones
    balance: Literal["shazeer", "switch", "none"] = "shazeer"  # shazeer: CV^2 of importance + load
    balance_weight: float = 0.1
    z_loss_weight: float = 0.001

    def __post_init__(self) -> None:
        _require(len(set(self.motion_taps)) == len(self.motion_taps), "model.motion_taps", "must not repeat a stage")
        _require(self.motion_reduction >= 1, "model.motion_reduction", "must be at least 1")
        for key in ("feature_dropout", "expert_dropout"):
            _require(0 <= getattr(self, key) < 1, f"model.{key}", "must be in [0, 1)")
        _require(self.num_experts >= 1, "model.num_experts", "must be at least 1")
        _require(
            1 <= self.top_k <= self.num_experts,
            "model.top_k",
            f"must be between 1 and model.num_experts ({self.num_experts})",
        )
        _require(
            min(self.gate_hidden, self.expert_hidden) >= 1,
            "model.gate_hidden / model.expert_hidden",
            "must be positive",
        )
        _require(self.gate_init_std >= 0, "model.gate_init_std", "must be 0 or more")
        if self.noise_std_learned:
            _require(
                self.noise_std_start > NOISE_STD_FLOOR,
                "model.noise_std_start",
                f"must be above {NOISE_STD_FLOOR} (the learned std's floor)",
            )
        else:
            _require(self.noise_std_start > 0, "model.noise_std_start", "(the fixed noise std) must be above 0")
        _require(
            min(self.balance_weight, self.z_loss_weight) >= 0,
            "model.balance_weight / model.z_loss_weight",
            "must be 0 or more",
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, precision, checkpointing and stopping."""

    epochs: int = 10
    batch_size: int = 8
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"  # sgd: Nesterov momentum
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    backbone_lr_scale: float = 0.1
    router_lr_scale: float = 1.0  # the MoE router's learning rate relative to train.lr
    weight_decay: float = 0.05
    scheduler: Literal["plateau", "cosine"] = "plateau"  # plateau: on validation accuracy; cosine: with warmup
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    warmup_epochs: int = 1
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.0
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    accumulate: int = 1  # optimizer step every N batches
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA >= 8.0, fp16 below, fp32 on CPU
    channels_last: bool = True  # channels_last_3d on CUDA
    activation_checkpointing: tuple[Literal["layer1", "layer2", "layer3", "layer4"], ...] = ()  # recompute in backward
    compile: bool = False
    freeze_bn: bool = False  # BatchNorm in eval mode (small batches; exact DDP equivalence on CPU)
    freeze: Literal["none", "backbone", "backbone+motion"] = "none"  # no gradients (nor BN updates) for these
    mixup_alpha: float = 0.0  # > 0: MixUp with lambda ~ Beta(alpha, alpha); with cutmix_alpha, one of the two per batch
    cutmix_alpha: float = 0.0  # > 0: CutMix (a box of another clip pasted into every frame)
    ema_decay: float = 0.0  # > 0: validate and keep as best an exponential moving average of the weights
    class_balance: Literal["none", "weights", "sampler"] = "none"  # weights: inverse-frequency loss weights;
    # sampler: each epoch draws its clips with probability 1 / (its class's count), seeded by (seed, epoch)
    trackers: tuple[Literal["tensorboard", "mlflow", "wandb"], ...] = ()  # any subset; see engine/trackers.py
    sync_bn: bool = True  # SyncBatchNorm under multi-GPU DDP
    early_stop_patience: int = 0  # epochs without validation improvement; 0 = off
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "accumulate"):
            _require(getattr(self, key) >= 1, f"train.{key}", "must be at least 1")
        _require(self.lr > 0, "train.lr", "must be positive")
        for key in (
            "backbone_lr_scale",
            "router_lr_scale",
            "weight_decay",
            "grad_clip",
            "plateau_patience",
            "warmup_epochs",
            "early_stop_patience",
            "mixup_alpha",
            "cutmix_alpha",
        ):
            _require(getattr(self, key) >= 0, f"train.{key}", "must be 0 or more")
        for key in ("momentum", "label_smoothing", "ema_decay"):
            _require(0 <= getattr(self, key) < 1, f"train.{key}", "must be in [0, 1)")
        _require(0 < self.plateau_factor < 1, "train.plateau_factor", "must be between 0 and 1 (exclusive)")
        _require(0 <= self.min_lr_ratio <= 1, "train.min_lr_ratio", "must be in [0, 1]")
        _require(
            re.fullmatch(DEVICE_PATTERN, self.device) is not None,
            "train.device",
            "must be one of auto, cpu, cuda, cuda:N",
        )


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        _require(
            not (self.train.freeze == "backbone+motion" and not self.model.motion_taps),
            "train.freeze",
            "is backbone+motion but model.motion_taps = [] builds no motion module; use train.freeze=backbone",
        )


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


def config_to_toml(config: Config) -> str:
    """The resolved config as TOML that ``load_config`` reads back to the same Config."""
    lines = []
    for section, values in config_to_dict(config).items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_literal(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return json.dumps(value)  # numbers, and strings with JSON escapes (valid TOML basic strings)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as JSON (read back with ``load_config_dict``)."""
    write_json(path, config_to_dict(config))


def load_config_dict(values: dict[str, Any]) -> Config:
    """Rebuild a Config from ``config_to_dict`` output; missing keys take today's defaults.

    A config saved by a run goes through ``runtime.compat.saved_config`` instead, which gives keys
    added since the run was written the values it trained with.
    """
    return _build(Config, values, prefix="")


def _read_toml(source: str | Path) -> dict[str, Any]:
    path = Path(source)
    if not path.exists() and str(source) in builtin_config_names():
        text = (resources.files("actionmoe") / "configs" / f"{source}.toml").read_text()
    elif path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config {source!s} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
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


def _require(condition: bool, key: str, rule: str) -> None:
    if not condition:
        raise ConfigError(f"config key {key} {rule}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if isinstance(value, dict):
        raise ConfigError(f"config key {key} is a value, not a section")
    if isinstance(value, _RawOverride):
        value = _parse_raw(value.text, hint)
    origin = typing.get_origin(hint)
    if origin is Literal:
        return _coerce_literal(value, typing.get_args(hint), key)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(hint), key)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key} must be a finite number, got {value!r}")
    if hint is float and isinstance(value, float):
        return value
    if hint in (int, float, str, bool) and type(value) is hint:
        return value
    raise ConfigError(f"config key {key} must be {_type_name(hint)}, got {value!r}")


def _coerce_tuple(value: Any, args: tuple, key: str) -> tuple:
    if isinstance(value, str) and args and _is_text(args[0]):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"config key {key} must be a list, got {value!r}")
    element_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
    if len(element_types) != len(value):
        raise ConfigError(f"config key {key} needs {len(element_types)} values, got {len(value)}")
    return tuple(_coerce(v, t, key) for v, t in zip(value, element_types))


def _coerce_literal(value: Any, allowed: tuple, key: str) -> Any:
    if any(type(value) is type(option) and value == option for option in allowed):
        return value
    raise ConfigError(f"config key {key} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _is_text(hint: Any) -> bool:
    """str, or a Literal of strings: a command-line value needs no quotes."""
    if typing.get_origin(hint) is Literal:
        return all(isinstance(option, str) for option in typing.get_args(hint))
    return hint is str


def _parse_raw(text: str, hint: Any) -> Any:
    if _is_text(hint):
        return _unquoted(text)
    if typing.get_origin(hint) is tuple and _is_text(typing.get_args(hint)[0]) and not text.startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _unquoted(text: str) -> str:
    """``"x"`` or ``'x'`` (a TOML string, as a shell user may type it) -> ``x``; anything else as it is."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            return text
    return text


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}.get(
            hint.__name__, hint.__name__
        )
    if isinstance(hint, types.GenericAlias):
        return str(hint)
    return repr(hint)
