"""Running notebooks/hmdb51.ipynb in tests: parameters injected the papermill way, executed with nbclient."""

from __future__ import annotations

from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "hmdb51.ipynb"

# The demo config on a smaller synthetic dataset and the tiny model: the whole notebook in about a minute.
DEMO_PARAMETERS = {
    "config_name": "demo",
    "data_source": "synthetic",
    "data_root": "data/demo",
    "output_dir": "runs/notebook",
    "split": 1,
    "epochs": 1,
    "overrides": [
        "synth.classes=3",
        "synth.videos_per_class=8",
        "synth.frames=12",
        "synth.width=48",
        "synth.height=40",
        "data.clip_len=8",
        "data.resize=[32,40]",
        "data.crop_size=24",
        "data.presample_frames=8",
        "data.num_workers=0",
        "model.expert_hidden=32",
        "model.gate_hidden=16",
        'model.motion_taps=["layer4"]',
        "train.batch_size=4",
    ],
    "share_app": False,  # the Gradio cell on loopback: CI has no internet for a public link
}


def with_parameters(notebook: nbformat.NotebookNode, parameters: dict) -> nbformat.NotebookNode:
    """A copy with a cell of ``parameters`` after the cell tagged ``parameters`` (papermill's convention)."""
    copy = nbformat.from_dict(notebook)
    index = next(i for i, cell in enumerate(copy.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    cell.id = "injected-parameters"
    copy.cells.insert(index + 1, cell)
    return copy


def execute(notebook: nbformat.NotebookNode, folder: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel whose working folder is ``folder``; raises on the first error."""
    from nbclient import NotebookClient

    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return notebook
