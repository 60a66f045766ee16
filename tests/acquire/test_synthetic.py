import hashlib

import numpy as np
import pytest
import rars

from actionmoe.acquire.synthetic import MOTIONS, render_video, synthetic_class_names, write_synthetic_hmdb51
from actionmoe.config import SYNTH_MAX_CLASSES, SynthConfig
from actionmoe.errors import ConfigError
from tests.helpers import TINY_SYNTH


def digest(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_archives_have_hmdb51_layout(tiny_archives):
    outer = rars.RarFile(str(tiny_archives / "hmdb51_org.rar"))
    classes = synthetic_class_names(TINY_SYNTH.classes)
    assert outer.namelist() == [f"{c}.rar" for c in classes]
    inner = rars.RarFile.from_bytes(outer.read(f"{classes[0]}.rar"))
    assert len(inner.namelist()) == TINY_SYNTH.videos_per_class
    assert all(n.startswith(f"{classes[0]}/") and n.endswith(".avi") for n in inner.namelist())
    splits = rars.RarFile(str(tiny_archives / "test_train_splits.rar"))
    assert len(splits.namelist()) == 3 * TINY_SYNTH.classes
    text = splits.read(f"testTrainMulti_7030_splits/{classes[0]}_test_split1.txt").decode()
    ids = [line.split()[1] for line in text.splitlines()]
    assert text.endswith(" \n") and ids.count("1") == 4 and ids.count("2") == 1


def test_same_seed_same_bytes_other_seed_differs(tiny_archives, tmp_path):
    write_synthetic_hmdb51(tmp_path / "again", TINY_SYNTH)
    for name in ("hmdb51_org.rar", "test_train_splits.rar"):
        assert digest(tmp_path / "again" / name) == digest(tiny_archives / name)
    other = SynthConfig(**{**TINY_SYNTH.__dict__, "seed": 2})
    write_synthetic_hmdb51(tmp_path / "other", other)
    assert digest(tmp_path / "other" / "hmdb51_org.rar") != digest(tiny_archives / "hmdb51_org.rar")


def test_rar5_solid_variant(tmp_path):
    spec = SynthConfig(classes=2, videos_per_class=4, frames=4, width=32, height=32, rar_format="rar5", solid=True)
    files = write_synthetic_hmdb51(tmp_path, spec)
    info = rars.RarFile(str(files["hmdb51_org.rar"])).infolist()
    assert [i.filename for i in info] == ["move_left.rar", "move_right.rar"]


@pytest.mark.parametrize("pair", [("move_right", "move_left"), ("rotate_cw", "rotate_ccw"), ("zoom_in", "zoom_out")])
def test_opposite_motions_look_alike_frame_by_frame(pair):
    """First-frame statistics do not separate a motion from its reverse; frame differences move the object."""
    first = {
        name: [render_video(name, np.random.default_rng(i), 6, 40, 48)[0].mean() for i in range(20)] for name in pair
    }
    assert abs(np.mean(first[pair[0]]) - np.mean(first[pair[1]])) < 2 * np.std(first[pair[0]])
    video = render_video(pair[0], np.random.default_rng(0), 6, 40, 48).astype(np.int16)
    assert np.abs(np.diff(video, axis=0)).mean() > 2.0


def test_bad_synth_arguments_are_config_errors():
    assert len(MOTIONS) == SYNTH_MAX_CLASSES  # the config's bound is the generator's real class count
    with pytest.raises(ConfigError, match="synth.classes must be 2 to 12"):
        SynthConfig(classes=len(MOTIONS) + 1)
    with pytest.raises(ConfigError, match="at least 4"):
        SynthConfig(videos_per_class=2)
