"""Reading runs and checkpoints written by earlier versions: every rule in one place.

To add a model or data key:

1. Add it to its dataclass in ``config.py`` with the default new runs should get.
2. Model key whose default differs from what earlier runs trained with (they saved no value for it):
   add that old value to ``MODEL_KEYS_ADDED``, so an old run restores and resumes as the model it is.
3. Model key that shapes nothing for a linear head or without motion modules: add it to
   ``MOE_HEAD_KEYS`` or ``MOTION_MODULE_KEYS``, so resuming does not compare it when it is moot.
4. Data key the weights depend on (how frames reach the model): add it to ``PREPROCESSING_KEYS``
   and give ``PREPROCESSING_ADDED`` the value earlier checkpoints and ONNX sidecars used.
5. Train key that changes the optimizer state's layout: compare it in ``check_optimizer_layout``
   with the value earlier runs had. A model key that only says how a run starts goes into
   ``START_ONLY_MODEL_KEYS``.
6. Test it in ``tests/runtime/test_compat.py``: a saved config without the key restores and
   resumes as before.

Everything that reads a saved config (``saved_config``), compares a run with a new config
(``check_compatible``) or converts a preprocessing record (``preprocessing_record`` /
``preprocessing_from_record``) goes through this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actionmoe.config import SHAZEER_NOISE_STD, Config, DataConfig, config_to_dict, load_config_dict
from actionmoe.errors import CheckpointError, ConfigError

# Model keys added after runs were first saved, with the value those runs were trained with: a saved
# config without the key reads as the model it trained, whatever today's default is.
MODEL_KEYS_ADDED = {
    "gate_init_std": 0.0,
    "noise_std_start": SHAZEER_NOISE_STD,
    "shared_expert": False,
    "noise_std_learned": True,
}

# Model keys that shape nothing when the head is linear (no router, no experts) or when no
# stage has a motion module.
MOE_HEAD_KEYS = (
    "num_experts", "top_k", "gate_hidden", "expert_hidden", "expert_dropout", "noisy_gating",
    "gate_init_std", "noise_std_start", "noise_std_learned", "shared_expert", "balance", "balance_weight",
    "z_loss_weight",
)  # fmt: skip
MOTION_MODULE_KEYS = ("motion_reduction", "motion_fusion")
# Model keys that matter only when a run starts (where its first weights come from): never compared on resume.
START_ONLY_MODEL_KEYS = ("init_from",)

# The data settings a model's weights depend on: recorded in every checkpoint and export sidecar.
PREPROCESSING_KEYS = (
    "clip_len",
    "resize",
    "crop_size",
    "mean",
    "std",
    "presample_frames",
    "decoder",
    "test_clips",
    "test_crops",
)
PREPROCESSING_ADDED: dict[str, Any] = {}  # none added since the first checkpoint format

# Optimizer parameter groups in the order their state is saved (``engine.optim.parameter_groups``).
PARAMETER_GROUP_ORDER = ("new", "router", "backbone")


def saved_config(values: dict[str, Any]) -> Config:
    """The Config of a saved run (``config_to_dict`` output), keys it lacks at the values it trained with.

    Raises:
        ConfigError: a value that is not valid today.
    """
    if not isinstance(values, dict):
        raise ConfigError("the saved config is not a table of sections")
    model = values.get("model", {})
    if not isinstance(model, dict):
        raise ConfigError("the saved config's model section is not a table of keys")
    return load_config_dict({**values, "model": {**MODEL_KEYS_ADDED, **model}})


def unused_model_keys(model: dict[str, Any]) -> set[str]:
    """The keys of a ``config_to_dict`` model section that shape nothing in this model."""
    moe = MOE_HEAD_KEYS if model["head"] == "linear" else ()
    return set(moe + (() if model["motion_taps"] else MOTION_MODULE_KEYS))


def preprocessing_record(data: DataConfig) -> dict:
    """The JSON record of ``data``'s preprocessing (``PREPROCESSING_KEYS``), as checkpoints and sidecars hold it."""
    record = {key: getattr(data, key) for key in PREPROCESSING_KEYS}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in record.items()}


def preprocessing_from_record(record: object) -> DataConfig:
    """The data config a recorded preprocessing describes, validated like any config (types, ranges, memory).

    Raises:
        ConfigError: a record that is not a table, lacks a key, or holds an invalid value.
    """
    if not isinstance(record, dict):
        raise ConfigError("the preprocessing record is not a table of keys")
    record = {**PREPROCESSING_ADDED, **record}
    missing = [key for key in PREPROCESSING_KEYS if key not in record]
    if missing:
        raise ConfigError(f"the preprocessing record lacks {', '.join(missing)}")
    return load_config_dict({"data": {key: record[key] for key in PREPROCESSING_KEYS}}).data


def check_compatible(meta: dict, config: Config, classes: tuple[str, ...], path: Path) -> None:
    """Refuse to continue a run whose classes, model, preprocessing or optimizer layout differ from this config.

    Raises:
        CheckpointError: naming the first difference and what to do.
    """
    if list(meta["classes"]) != list(classes):
        raise CheckpointError(
            f"{path} was trained on {len(meta['classes'])} classes ({', '.join(meta['classes'][:3])}, ...) but this "
            f"dataset has {len(classes)} ({', '.join(classes[:3])}, ...); use another --out or --force"
        )
    trained, wanted = run_model_config(meta), config_to_dict(config)["model"]
    moot = unused_model_keys(trained) | unused_model_keys(wanted) | set(START_ONLY_MODEL_KEYS)
    differing = [
        key for key in sorted(set(trained) | set(wanted)) if key not in moot and trained.get(key) != wanted.get(key)
    ]
    if differing:
        differences = ", ".join(
            f"model.{key}: {trained.get(key)} in the run, {wanted.get(key)} here" for key in differing
        )
        raise CheckpointError(
            f"{path} was trained with another model config ({differences}); use another --out or --force"
        )
    if {**PREPROCESSING_ADDED, **meta["preprocessing"]} != preprocessing_record(config.data):
        raise CheckpointError(f"{path} was trained with other preprocessing; use another --out or --force")
    check_optimizer_layout(meta["config"]["train"], config_to_dict(config)["train"], path)


def check_optimizer_layout(trained: dict, wanted: dict, path: Path) -> None:
    """The optimizer's kind, the frozen parts and whether the router has groups of its own decide its state's layout."""
    trained = {"router_lr_scale": 1.0, "freeze": "none", **trained}  # runs from before the keys existed
    rules = (
        ("optimizer", lambda a, b: a == b),
        ("freeze", lambda a, b: a == b),
        ("router_lr_scale", lambda a, b: (a == 1) == (b == 1)),
    )
    for key, same in rules:
        if not same(trained[key], wanted[key]):
            raise CheckpointError(
                f"{path} was trained with other optimizer settings (train.{key}: {trained[key]} in the run, "
                f"{wanted[key]} here); its optimizer state cannot be resumed. Use the run's value, another --out "
                "or --force"
            )


def run_model_config(meta: dict) -> dict:
    """The run's model config, keys added since it was written at the values it trained with (as restore reads it)."""
    return config_to_dict(saved_config({"model": meta["config"]["model"]}))["model"]
