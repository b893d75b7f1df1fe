"""experiments/mix_npy.py: the extra source's photos that a held-out set picked stay out of the
training set, and a held-out set that is not the extra's first picks is refused."""
import json
import os
import sys

import numpy as np
import pytest

from glcic.errors import UserError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'experiments'))
import mix_npy  # noqa: E402


def npy_dir(path, **splits):
    os.makedirs(path)
    for split, images in splits.items():
        np.save(os.path.join(path, f'x_{split}.npy'), images)
    with open(os.path.join(path, 'meta.json'), 'w') as f:
        json.dump({'source': str(path), 'train': len(splits['train'])}, f)
    return str(path)


def faces(first, count):
    """count 4x4 images whose pixels all hold their index (first, first + 1, ...)."""
    return np.repeat(np.arange(first, first + count, dtype=np.uint8), 48).reshape(count, 4, 4, 3)


def test_the_training_set_is_the_base_and_the_picks_after_the_held_out_ones(tmp_path):
    base = npy_dir(tmp_path / 'base', train=faces(200, 6), val=faces(206, 1), test=faces(207, 2))
    extra = npy_dir(tmp_path / 'extra', train=faces(0, 5), val=faces(5, 1), test=faces(6, 4))
    heldout = npy_dir(tmp_path / 'heldout', train=faces(0, 2), test=faces(2, 2))
    out = str(tmp_path / 'mixed')
    mix_npy.mix(out, base, extra, heldout)

    train = np.load(os.path.join(out, 'x_train.npy'))
    assert train[:, 0, 0, 0].tolist() == [200, 201, 202, 203, 204, 205, 4, 5, 6, 7, 8, 9]
    assert np.array_equal(np.load(os.path.join(out, 'x_val.npy')), faces(206, 1))
    assert np.array_equal(np.load(os.path.join(out, 'x_test.npy')), faces(207, 2))
    with open(os.path.join(out, 'meta.json')) as f:
        meta = json.load(f)
    assert meta['train'] == 12 and meta['mean_pixel_rgb'] == [round(train.mean(), 2)] * 3


def test_a_held_out_set_of_other_photos_is_refused_and_nothing_is_written(tmp_path):
    base = npy_dir(tmp_path / 'base', train=faces(200, 6), val=faces(206, 1), test=faces(207, 2))
    extra = npy_dir(tmp_path / 'extra', train=faces(0, 5), test=faces(5, 5))
    heldout = npy_dir(tmp_path / 'heldout', train=faces(1, 2), test=faces(3, 2))  # not the first picks
    with pytest.raises(UserError, match='first 4 picks'):
        mix_npy.mix(str(tmp_path / 'mixed'), base, extra, heldout)
    assert not os.path.exists(tmp_path / 'mixed')
    first = npy_dir(tmp_path / 'first', train=faces(0, 1), test=faces(1, 1))
    with pytest.raises(UserError, match='exists'):
        mix_npy.mix(base, base, extra, first)  # never over a folder that is there
    assert np.array_equal(np.load(os.path.join(base, 'x_train.npy')), faces(200, 6))
