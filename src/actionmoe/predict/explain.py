"""Where the model looked: Grad-CAM through the R(2+1)D backbone, for the whole head and per expert.

    actionmoe explain clip.mp4 --checkpoint best.safetensors --per-expert --out explain/

Grad-CAM (Selvaraju et al. 2017) on the feature map the head pools, the backbone's last stage
after its motion module, [C', T', H', W']: each channel is weighted by the mean gradient of the
target score over (T', H', W'), the weighted sum is rectified, and the map is placed on the clip's
frames and pixels and scaled to [0, 1]. The target is the class's logit for the whole model; with
``per_expert``, each expert's own logit for that class (the shared expert's, and each routed
expert's before its gate), so the maps show whether experts attend to different things; the gates
say how much each routed expert counted for this clip. One clip: the checkpoint's first test view
(its centre crop). Plain autograd on the output of ``ActionRecognizer.features`` (no hooks);
tested against a hand-computed case.

Placing the map: cell j is centred on input position stride * j, because R(2+1)D's strided
convolutions have odd kernels and "same" padding (tested in tests/models/test_recognizer.py), so
each frame and pixel reads the map there, linearly between cells. The usual resize (half-pixel
centres, as ``F.interpolate`` and ``cv2.resize`` do) would put cell j at stride * j + (stride - 1) / 2:
7.5 pixels right of and below where it looks at stride 16, a quarter of a 32-pixel crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from actionmoe.errors import UsageError
from actionmoe.predict.predictor import Predictor

MODEL_MAP = "model"


@dataclass(frozen=True)
class Explanation:
    source: str
    class_name: str
    score: float  # the class's probability for this clip
    frames: np.ndarray  # uint8 [T, H, W, 3]: the clip as the model saw it
    maps: dict[str, np.ndarray]  # name -> float [T, H, W] in [0, 1]; "model" first, then "shared expert", "expert N"
    gates: list[float] | None  # the routed experts' gates for this clip (None for a linear head)


def grad_cam(
    features: torch.Tensor, score: torch.Tensor, size: tuple[int, int, int], stride: tuple[int, int, int]
) -> np.ndarray:
    """Grad-CAM of ``score`` (a scalar computed from ``features`` [1, C, T', H', W']) -> [T, H, W] in [0, 1].

    ``features`` must require grad; its gradient is taken fresh (``torch.autograd.grad``), so several
    targets can share one forward pass (``retain_graph``). ``stride``: the feature map's (t, h, w)
    stride in clip frames and pixels (``R2Plus1DBackbone.stride``).
    """
    (grads,) = torch.autograd.grad(score, features, retain_graph=True)  # [1, C, T', H', W']
    weights = grads.mean(dim=(2, 3, 4), keepdim=True)  # [1, C, 1, 1, 1]
    cam = F.relu((weights * features).sum(dim=1, keepdim=True))  # [1, 1, T', H', W']
    cam = place_on_clip(cam.detach(), size, stride)  # [T, H, W]
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).cpu().numpy()


def place_on_clip(cam: torch.Tensor, size: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """A map [1, 1, T', H', W'] -> [T, H, W]: position x reads it at cell x / stride (linear between cells,
    the last cell's value beyond it), because cell j is centred on position stride * j."""
    axes = []
    for length, cells, step in zip(size, cam.shape[2:], stride, strict=True):
        at = (torch.arange(length, dtype=cam.dtype) / step).clamp(max=cells - 1)  # [length] in cell units
        axes.append(at / (cells - 1) * 2 - 1 if cells > 1 else torch.zeros(length, dtype=cam.dtype))
    t, y, x = torch.meshgrid(*axes, indexing="ij")  # each [T, H, W]
    grid = torch.stack([x, y, t], dim=-1)[None].to(cam.device)  # [1, T, H, W, 3] in grid_sample's (x, y, t) order
    return F.grid_sample(cam, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, 0]


def explain(
    predictor: Predictor, video: str | Path, class_name: str | None = None, per_expert: bool = False
) -> Explanation:
    """Grad-CAM maps of one video for ``class_name`` (default: the predicted class).

    Raises:
        UsageError: an ONNX predictor (no gradients), a class the checkpoint does not know.
        VideoDecodeError: the file cannot be read as a video, or is too short for one clip.
    """
    check_explainable(predictor, class_name)
    model = predictor.restored.model
    clip = first_view(predictor, Path(video))  # [1, 3, T, H, W]
    features = model.features(clip).detach().requires_grad_(True)  # [1, C', T', H', W']
    with torch.enable_grad():
        pooled = model.pool(features)  # [1, D]
        out = model.head(pooled)
        logits = out.logits.float() / predictor.restored.temperature  # [1, classes]
        target = predictor.classes.index(class_name) if class_name else int(logits.argmax())
        size, stride = tuple(clip.shape[2:]), model.backbone.stride()
        maps = {MODEL_MAP: grad_cam(features, out.logits[0, target], size, stride)}
        gates = None
        if out.routing is not None:
            gates = out.routing.gates[0].float().tolist()
            if per_expert:
                maps.update(expert_maps(model.head, pooled, features, target, size, stride))
    return Explanation(
        str(video),
        predictor.classes[target],
        float(logits.detach().softmax(dim=1)[0, target]),
        display_frames(clip[0], predictor),
        maps,
        gates,
    )


def expert_maps(
    head, pooled: torch.Tensor, features: torch.Tensor, target: int, size: tuple[int, ...], stride: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """One map per expert: the shared expert's and each routed expert's own logit for ``target``."""
    expert_logits = head.experts(pooled)  # [1, S + E, classes], shared first
    names = ["shared expert"] * head.shared + [f"expert {e + 1}" for e in range(expert_logits.shape[1] - head.shared)]
    return {name: grad_cam(features, expert_logits[0, i, target], size, stride) for i, name in enumerate(names)}


def check_explainable(predictor: Predictor, class_name: str | None) -> None:
    """Refuse what cannot be explained before any video is decoded.

    Raises:
        UsageError: an exported (ONNX) model, or a class name the checkpoint does not have.
    """
    if predictor.restored is None:
        raise _not_onnx(predictor.source)
    if class_name is not None and class_name not in predictor.classes:
        shown = ", ".join(predictor.classes[:8]) + (" ..." if len(predictor.classes) > 8 else "")
        raise UsageError(f"--class {class_name!r} is not a class of this checkpoint ({shown})")


def check_explainable_source(checkpoint: str | Path) -> None:
    """Refuse an exported ONNX model by its name, before it is loaded.

    Raises:
        UsageError: ``checkpoint`` ends in .onnx.
    """
    if Path(checkpoint).suffix.lower() == ".onnx":
        raise _not_onnx(Path(checkpoint))


def _not_onnx(path: Path) -> UsageError:
    return UsageError(
        f"explain needs the PyTorch checkpoint (Grad-CAM takes gradients); {path.name} is an exported ONNX "
        "model: pass the .safetensors checkpoint it was exported from"
    )


def first_view(predictor: Predictor, video: Path) -> torch.Tensor:
    """The checkpoint's first test view of ``video`` as model input [1, 3, T, H, W] on the predictor's device."""
    from actionmoe.data.dataset import load_views

    rng = np.random.default_rng(0)
    views = load_views(predictor.reader, video, predictor.preprocessing, False, rng)  # uint8 [V, T, H, W, 3]
    batch = predictor.preprocessing.worker(views, False, rng)[None]  # [1, V', ...]
    return predictor.preprocessing.on_device(batch, predictor.device, False)[:, 0].float()  # [1, 3, T, s, s]


def display_frames(clip: torch.Tensor, predictor: Predictor) -> np.ndarray:
    """Model input [3, T, H, W] back to uint8 RGB frames [T, H, W, 3] (the normalisation undone)."""
    mean = torch.tensor(predictor.preprocessing.mean, device=clip.device).view(3, 1, 1, 1)
    std = torch.tensor(predictor.preprocessing.std, device=clip.device).view(3, 1, 1, 1)
    rgb = (clip * std + mean).clamp(0, 1).permute(1, 2, 3, 0)  # [T, H, W, 3]
    return (rgb * 255).round().to(torch.uint8).cpu().numpy()


def overlay(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A uint8 frame [H, W, 3] with ``heat`` [H, W] in [0, 1] over it (matplotlib's jet colours)."""
    from matplotlib import colormaps

    coloured = colormaps["jet"](heat)[..., :3]  # [H, W, 3] in [0, 1]
    mixed = (1 - alpha) * frame / 255.0 + alpha * coloured
    return (mixed * 255).round().astype(np.uint8)


STRIP_FRAMES = 8  # frames shown per row of the strip


def save_strip(explanation: Explanation, path: Path) -> Path:
    """A PNG: one row per map (the model's first), up to ``STRIP_FRAMES`` frames across, heat over the frames."""
    from actionmoe.files import pyplot, save_figure

    plt = pyplot()
    frames = explanation.frames
    shown = np.unique(np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round().astype(int))
    rows = list(explanation.maps.items())
    fig, axes = plt.subplots(len(rows), len(shown), figsize=(1.6 * len(shown), 1.7 * len(rows)), squeeze=False)
    for row, (name, heat) in enumerate(rows):
        for column, t in enumerate(shown):
            ax = axes[row, column]
            ax.imshow(overlay(frames[t], heat[t]))
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(_row_label(name, explanation.gates), fontsize=7)
            if row == 0:
                ax.set_title(f"frame {t + 1}", fontsize=7)
    fig.suptitle(f"{Path(explanation.source).name}: {explanation.class_name} {explanation.score:.2f}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _row_label(name: str, gates: list[float] | None) -> str:
    if gates is None or not name.startswith("expert "):
        return name
    return f"{name}\ngate {gates[int(name.split()[1]) - 1]:.2f}"


def save_animation(explanation: Explanation, path: Path, fps: float = 8.0) -> Path:
    """An animated GIF of the frames with the model's map over them."""
    import io

    from PIL import Image

    from actionmoe.files import write_atomically

    heat = explanation.maps[MODEL_MAP]
    images = [Image.fromarray(overlay(frame, heat[t])) for t, frame in enumerate(explanation.frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return write_atomically(path, buffer.getvalue())
