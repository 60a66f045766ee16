import numpy as np
import pytest

from actionmoe.data.sampling import multi_clip_indices, segment_random_indices, uniform_indices


@pytest.mark.parametrize("num_frames", [1, 3, 16, 17, 1000])
def test_exactly_clip_len_indices_in_range_and_ordered(num_frames):
    rng = np.random.default_rng(0)
    for indices in (
        uniform_indices(num_frames, 16),
        segment_random_indices(num_frames, 16, rng),
        *multi_clip_indices(num_frames, 16, 3),
    ):
        assert indices.shape == (16,)
        assert indices.min() >= 0 and indices.max() < num_frames
        assert np.all(np.diff(indices) >= 0)


def test_uniform_spans_the_whole_video():
    assert uniform_indices(1000, 16)[[0, -1]].tolist() == [0, 999]
    assert uniform_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # short video: frames repeated in order


def test_random_segments_cover_each_segment_and_depend_on_rng():
    picks = np.stack([segment_random_indices(160, 16, np.random.default_rng(s)) for s in range(200)])
    segment = np.arange(16)[None] * 10
    assert np.all((picks >= segment) & (picks < segment + 10))
    assert len({tuple(p) for p in picks}) > 150
    assert np.array_equal(
        segment_random_indices(160, 16, np.random.default_rng(5)),
        segment_random_indices(160, 16, np.random.default_rng(5)),
    )


def test_multi_clip_views_interleave():
    views = multi_clip_indices(160, 16, 2)
    assert views.shape == (2, 16)
    assert views[0].tolist() == list(range(2, 160, 10)) and views[1].tolist() == list(range(7, 160, 10))
    assert np.array_equal(multi_clip_indices(160, 16, 1)[0], uniform_indices(160, 16))


def test_bad_arguments():
    with pytest.raises(ValueError):
        uniform_indices(0, 16)
    with pytest.raises(ValueError):
        multi_clip_indices(10, 16, 0)
