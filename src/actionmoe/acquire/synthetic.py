"""A motion-only action dataset written exactly as HMDB51 ships.

Each class is a motion (direction of travel, rotation sense, zoom, oscillation, orbit). Shape,
texture, colours, background, distractors, start position, size and speed are random per video,
so no single frame tells the class: telling ``move_right`` from ``move_left`` or ``rotate_cw``
from ``rotate_ccw`` needs the order of frames.

Output (same names and nesting as the real release)::

    OUT/hmdb51_org.rar          RAR of <class>.rar, each holding <class>/<video>.avi
    OUT/test_train_splits.rar   testTrainMulti_7030_splits/<class>_test_split<N>.txt
    OUT/checksums.md5           md5sum-style lines for both archives
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from actionmoe.acquire.download import file_md5
from actionmoe.config import SynthConfig
from actionmoe.data.decode import write_video
from actionmoe.files import ensure_writable

ARCHIVE_MTIME = 1_381_000_000  # fixed, so archives are byte-identical for a seed
TRAIN_FRACTION = 0.7


@dataclass(frozen=True)
class Pose:
    """Where the moving object is at time t in [0, 1]: centre (fractions of W, H), angle, size."""

    x: float
    y: float
    angle: float
    scale: float


Motion = Callable[[np.random.Generator], Callable[[float], Pose]]


def _travel(dx: float, dy: float) -> Motion:
    def make(rng: np.random.Generator) -> Callable[[float], Pose]:
        distance = rng.uniform(0.35, 0.55)
        x0, y0 = _start_for_travel(rng, dx * distance), _start_for_travel(rng, dy * distance)
        angle, scale = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.3)
        return lambda t: Pose(x0 + dx * distance * t, y0 + dy * distance * t, angle, scale)

    return make


def _start_for_travel(rng: np.random.Generator, delta: float) -> float:
    low, high = (0.15, 0.85 - delta) if delta >= 0 else (0.15 - delta, 0.85)
    return rng.uniform(low, high) if delta else rng.uniform(0.3, 0.7)


def _rotate(sense: float) -> Motion:
    def make(rng: np.random.Generator) -> Callable[[float], Pose]:
        x0, y0, a0 = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0, 2 * math.pi)
        turn, scale = rng.uniform(0.6, 1.2) * math.pi, rng.uniform(0.25, 0.35)
        return lambda t: Pose(x0, y0, a0 + sense * turn * t, scale)

    return make


def _zoom(grow: bool) -> Motion:
    def make(rng: np.random.Generator) -> Callable[[float], Pose]:
        x0, y0, angle = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0, 2 * math.pi)
        small, factor = rng.uniform(0.12, 0.2), rng.uniform(1.8, 2.4)
        return lambda t: Pose(x0, y0, angle, small * factor ** (t if grow else 1 - t))

    return make


def _swing(horizontal: bool) -> Motion:
    def make(rng: np.random.Generator) -> Callable[[float], Pose]:
        centre, other = rng.uniform(0.4, 0.6), rng.uniform(0.3, 0.7)
        amplitude, cycles, phase = rng.uniform(0.15, 0.25), rng.uniform(1.5, 2.5), rng.uniform(0, 2 * math.pi)
        angle, scale = rng.uniform(0, 2 * math.pi), rng.uniform(0.18, 0.26)

        def pose(t: float) -> Pose:
            offset = centre + amplitude * math.sin(2 * math.pi * cycles * t + phase)
            return Pose(offset, other, angle, scale) if horizontal else Pose(other, offset, angle, scale)

        return pose

    return make


def _orbit(sense: float) -> Motion:
    def make(rng: np.random.Generator) -> Callable[[float], Pose]:
        cx, cy, radius = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.18, 0.28)
        start, sweep = rng.uniform(0, 2 * math.pi), rng.uniform(1.0, 1.6) * math.pi
        angle, scale = rng.uniform(0, 2 * math.pi), rng.uniform(0.14, 0.2)

        def pose(t: float) -> Pose:
            theta = start + sense * sweep * t
            return Pose(cx + radius * math.cos(theta), cy + radius * math.sin(theta), angle, scale)

        return pose

    return make


MOTIONS: dict[str, Motion] = {
    "move_right": _travel(1, 0),
    "move_left": _travel(-1, 0),
    "move_up": _travel(0, -1),
    "move_down": _travel(0, 1),
    "zoom_in": _zoom(True),
    "zoom_out": _zoom(False),
    "rotate_cw": _rotate(1),
    "rotate_ccw": _rotate(-1),
    "swing_horizontal": _swing(True),
    "swing_vertical": _swing(False),
    "orbit_cw": _orbit(1),
    "orbit_ccw": _orbit(-1),
}


# Motions that are each other played backwards: a model blind to the order of frames cannot tell them apart.
# (The swings go back and forth, so reversing one gives the same motion.)
TIME_REVERSED_TWINS = {
    "move_right": "move_left",
    "move_left": "move_right",
    "move_up": "move_down",
    "move_down": "move_up",
    "zoom_in": "zoom_out",
    "zoom_out": "zoom_in",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
    "orbit_cw": "orbit_ccw",
    "orbit_ccw": "orbit_cw",
}

MOTION_FAMILIES = {
    "move_right": "travel",
    "move_left": "travel",
    "move_up": "travel",
    "move_down": "travel",
    "zoom_in": "zoom",
    "zoom_out": "zoom",
    "rotate_cw": "rotation",
    "rotate_ccw": "rotation",
    "swing_horizontal": "oscillation",
    "swing_vertical": "oscillation",
    "orbit_cw": "orbit",
    "orbit_ccw": "orbit",
}


def synthetic_class_names(num_classes: int) -> list[str]:
    """The first ``num_classes`` motions, sorted (sorted order = label ids, as for HMDB51)."""
    return sorted(list(MOTIONS)[:num_classes])


@dataclass(frozen=True)
class Sprite:
    """A striped, star-shaped object: radius r(phi) = 1 + bump * cos(lobes * phi + twist)."""

    lobes: int
    bump: float
    twist: float
    stripe_freq: float
    colours: np.ndarray  # [2, 3] uint8


def random_sprite(rng: np.random.Generator) -> Sprite:
    colours = rng.integers(0, 256, size=(2, 3), dtype=np.uint8)
    return Sprite(
        int(rng.integers(2, 6)), rng.uniform(0.2, 0.4), rng.uniform(0, 2 * math.pi), rng.uniform(4, 9), colours
    )


def draw_sprite(canvas: np.ndarray, sprite: Sprite, pose: Pose) -> None:
    """Paint ``sprite`` at ``pose`` onto ``canvas`` [H, W, 3] in place (inverse-mapped, no aliasing tricks)."""
    height, width = canvas.shape[:2]
    size = pose.scale * min(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = (xs - pose.x * width) / size, (ys - pose.y * height) / size
    cos, sin = math.cos(pose.angle), math.sin(pose.angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # object coordinates
    radius = 1 + sprite.bump * np.cos(sprite.lobes * np.arctan2(v, u) + sprite.twist)
    inside = np.hypot(u, v) < radius
    stripes = (np.sin(sprite.stripe_freq * u) > 0).astype(np.intp)
    canvas[inside] = sprite.colours[stripes[inside]]


def render_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Blocky low-frequency colour texture plus two static distractor objects; [H, W, 3] uint8."""
    cells = rng.integers(0, 256, size=(4, 5, 3)).astype(np.float32)
    base = rng.integers(0, 256, size=3).astype(np.float32)
    rows = np.minimum(np.arange(height) * 4 // height, 3)
    cols = np.minimum(np.arange(width) * 5 // width, 4)
    texture = 0.75 * base + 0.25 * cells[rows][:, cols]
    canvas = texture.astype(np.uint8)
    for _ in range(2):
        pose = Pose(rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0, 6.3), rng.uniform(0.06, 0.12))
        draw_sprite(canvas, random_sprite(rng), pose)
    return canvas


def render_video(
    motion: str,
    rng: np.random.Generator,
    frames: int,
    height: int,
    width: int,
    place: Callable[[Pose], Pose] = lambda pose: pose,
) -> np.ndarray:
    """One video of ``motion`` with random appearance; RGB uint8 [T, H, W, 3].

    ``place`` maps each pose of the trajectory before it is drawn (``bench explain`` keeps the object
    in one half of the frame with it).
    """
    background = render_background(rng, height, width)
    sprite, trajectory = random_sprite(rng), MOTIONS[motion](rng)
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    for index in range(frames):
        canvas = background.copy()
        draw_sprite(canvas, sprite, place(trajectory(index / max(frames - 1, 1))))
        noise = rng.normal(0, 4, size=canvas.shape)
        video[index] = np.clip(canvas + noise, 0, 255).astype(np.uint8)
    return video


def write_synthetic_hmdb51(out: Path, spec: SynthConfig) -> dict[str, Path]:
    """Write both archives and ``checksums.md5`` into ``out``; returns {file name: path}."""
    classes = synthetic_class_names(spec.classes)
    ensure_writable(out, "--out")
    with tempfile.TemporaryDirectory(dir=out, prefix=".synth-") as scratch:
        videos = _write_videos(Path(scratch), classes, spec)
        files = {
            "hmdb51_org.rar": _write_video_archive(out, classes, videos, spec),
            "test_train_splits.rar": _write_split_archive(out, classes, videos, spec),
        }
    lines = [f"{file_md5(path)}  {name}\n" for name, path in files.items()]
    (out / "checksums.md5").write_text("".join(lines))
    files["checksums.md5"] = out / "checksums.md5"
    return files


def _video_names(class_name: str, count: int) -> list[str]:
    return [f"synth_{i:03d}_{class_name}_f_nm_np1_fr_med_{i % 3}.avi" for i in range(count)]


def _write_videos(scratch: Path, classes: list[str], spec: SynthConfig) -> dict[str, list[Path]]:
    videos: dict[str, list[Path]] = {}
    for label, name in enumerate(tqdm(classes, desc="synth classes", disable=None, leave=False)):
        folder = scratch / name
        folder.mkdir()
        videos[name] = []
        for index, video_name in enumerate(_video_names(name, spec.videos_per_class)):
            rng = np.random.default_rng([spec.seed, label, index])
            frames = render_video(name, rng, spec.frames, spec.height, spec.width)
            write_video(folder / video_name, frames, spec.fps)
            videos[name].append(folder / video_name)
    return videos


def _builder(spec: SynthConfig):
    import rars

    return rars.RarBuilder(format=rars.RAR29 if spec.rar_format == "rar4" else rars.RAR50, solid=spec.solid)


def _write_video_archive(out: Path, classes: list[str], videos: dict[str, list[Path]], spec: SynthConfig) -> Path:
    outer = _builder(spec)
    for name in classes:
        inner = _builder(spec)
        for path in videos[name]:
            inner.add_bytes(path.read_bytes(), f"{name}/{path.name}", mtime=ARCHIVE_MTIME)
        outer.add_bytes(inner.to_bytes(), f"{name}.rar", mtime=ARCHIVE_MTIME)
    return _write_atomically(outer, out / "hmdb51_org.rar")


def _write_split_archive(out: Path, classes: list[str], videos: dict[str, list[Path]], spec: SynthConfig) -> Path:
    builder = _builder(spec)
    for label, name in enumerate(classes):
        names = [p.name for p in videos[name]]
        for split in (1, 2, 3):
            order = np.random.default_rng([spec.seed, label, split, 7]).permutation(len(names))
            train = set(order[: int(round(TRAIN_FRACTION * len(names)))].tolist())
            text = "".join(f"{video} {1 if i in train else 2} \n" for i, video in enumerate(names))
            builder.add_bytes(
                text.encode(), f"testTrainMulti_7030_splits/{name}_test_split{split}.txt", mtime=ARCHIVE_MTIME
            )
    return _write_atomically(builder, out / "test_train_splits.rar")


def _write_atomically(builder, path: Path) -> Path:
    partial = path.with_name(path.name + ".part")
    builder.write(str(partial))
    partial.replace(path)
    return path
