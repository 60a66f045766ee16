"""What this installation can do: versions, compute device, video decoders, archive extractors."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform

from actionmoe import __version__
from actionmoe.acquire.archives import available_rar_backends
from actionmoe.data.decode import available_decoders

PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "opencv-python-headless",
    "av",
    "torchcodec",
    "rars",
    "libarchive-c",
    "safetensors",
    "scikit-learn",
    "matplotlib",
    "tqdm",
)


# The optional extras of pyproject.toml and the modules each brings (looked up, not imported).
EXTRAS = {
    "web": ("fastapi", "uvicorn", "multipart", "fastapi_offline"),
    "export": ("onnx", "onnxruntime", "onnxscript"),
    "notebook": ("ipykernel", "ipywidgets", "nbclient", "nbformat"),
    "hub": ("huggingface_hub",),
    "tensorboard": ("tensorboard",),
    "app": ("gradio", "gradio_client"),
    "track": ("tensorboard", "mlflow", "sqlalchemy", "alembic", "pandas", "wandb"),
}


def installed_extras() -> dict[str, bool]:
    """Which extras are complete in this environment (``pip install 'actionmoe[NAME]'`` adds one)."""
    return {name: all(importlib.util.find_spec(module) for module in modules) for name, modules in EXTRAS.items()}


def environment_report() -> dict:
    import torch

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    cuda = torch.cuda.is_available()
    return {
        "actionmoe": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": {
            "cuda_available": cuda,
            "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "cpu_threads": torch.get_num_threads(),
        },
        "decoders": available_decoders(),
        "rar_extractors": available_rar_backends(),
        "extras": installed_extras(),
    }


def format_report(report: dict) -> str:
    lines = [f"actionmoe {report['actionmoe']} on Python {report['python']} ({report['platform']})"]
    lines += [f"  {name:<24} {version or 'not installed'}" for name, version in report["packages"].items()]
    device = report["device"]
    gpus = ", ".join(device["cuda_devices"]) or "none"
    lines.append(
        f"device: {'cuda' if device['cuda_available'] else 'cpu'} (GPUs: {gpus}; CPU threads: {device['cpu_threads']})"
    )
    lines.append(f"video decoders: {', '.join(report['decoders']) or 'none (pip install opencv-python-headless av)'}")
    lines.append(f"RAR extractors: {', '.join(report['rar_extractors']) or 'none (pip install rars)'}")
    extras = report["extras"]
    missing = [name for name, present in extras.items() if not present]
    lines.append(
        f"extras installed: {', '.join(name for name, present in extras.items() if present) or 'none'}"
        + (f"; add more with pip install 'actionmoe[{','.join(missing)}]'" if missing else "")
    )
    return "\n".join(lines)
