"""The realism number (glcic/realism.py): real holes score at chance, known flaws do not."""
import glob
import os

import cv2
import numpy as np
import pytest

from conftest import ROOT
from glcic import data, evaluate, realism, synthetic

FACES = os.path.join(os.path.dirname(ROOT), 'shared', 'faces')


def holes(count, size, seed=0):
    masks, _ = data.sample_holes(np.random.RandomState(seed), count, size)
    return masks


def synthetic_faces(count, size=64):
    return np.stack([synthetic.face(size, seed) for seed in range(count)])


def test_features_are_one_finite_row_per_hole_and_a_holeless_image_is_refused(tiny_config):
    images = synthetic_faces(6, 32)
    masks = holes(6, 32)
    rows = realism.features(images, masks)
    assert rows.shape == (6, 337) and rows.dtype == np.float32 and np.isfinite(rows).all()
    masks[2] = 0
    with pytest.raises(ValueError, match='no hole'):
        realism.features(images, masks)


def test_the_critic_is_fixed_the_same_sets_give_the_same_score():
    rng = np.random.RandomState(0)
    filled, real = rng.randn(60, 5), rng.randn(60, 5) + 0.3
    assert realism.accuracy(filled, real) == realism.accuracy(filled, real)


def test_the_critic_finds_a_shift_in_one_feature_and_not_in_none():
    rng = np.random.RandomState(1)
    real = rng.randn(400, 20)
    same = rng.randn(400, 20)
    shifted = rng.randn(400, 20)
    shifted[:, 7] += 1.5  # one feature moved by 1.5 SD: an ideal critic gets 77 %
    assert abs(realism.accuracy(same, real) - 0.5) < 0.06
    assert realism.accuracy(shifted, real) > 0.7


def paste(truth, masks, fill):
    out = truth.copy()
    hole = masks[..., 0] > 0.5
    out[hole] = fill[hole]
    return out


def scores(truth, masks):
    f = truth.astype(np.float32)
    real = realism.features(truth, masks)
    masked = evaluate.hide_holes(truth, masks)
    fills = {'real': truth,
             'mean fill': evaluate.mean_fill(masked, masks, data.mean_rgb(truth).astype(np.uint8)),
             'noise': paste(truth, masks, np.clip(f + np.random.RandomState(0).normal(0, 12, f.shape), 0, 255)
                            .astype(np.uint8)),
             'red cast': paste(truth, masks, np.clip(f + [16, 0, 0], 0, 255).astype(np.uint8)),
             'blur': paste(truth, masks, np.stack([cv2.GaussianBlur(t, (0, 0), 3.0) for t in truth]))}
    return {name: realism.score(realism.features(images, masks), real) for name, images in fills.items()}


def test_on_synthetic_faces_real_holes_are_at_chance_and_flaws_are_seen(tiny_config):
    tiny_config.HOLE_MIN, tiny_config.HOLE_MAX = 12, 24
    truth = synthetic_faces(200)
    got = scores(truth, holes(200, 64))
    assert abs(got['real'] - 0.5) < 0.12, got
    for flaw in ('mean fill', 'noise', 'blur'):  # colour casts: in the real-faces test (flat synthetic skin varies more)
        assert got[flaw] > 0.7, (flaw, got)


@pytest.mark.skipif(not os.path.isdir(FACES), reason='no ../shared/faces here')
def test_on_real_faces_the_order_is_real_then_flaws_then_mean_fill(tiny_config):
    paths = sorted(glob.glob(os.path.join(FACES, '*.jpg')))[:400]
    truth = np.stack([cv2.resize(cv2.imread(p)[..., ::-1], (128, 128), interpolation=cv2.INTER_AREA)
                      for p in paths])
    tiny_config.IMAGE_SIZE, tiny_config.HOLE_MIN, tiny_config.HOLE_MAX = 128, 24, 48
    got = scores(truth, holes(400, 128))
    assert abs(got['real'] - 0.5) < 0.1, got
    assert min(got['noise'], got['red cast'], got['blur']) > 0.65, got
    assert got['mean fill'] > max(got['red cast'], got['blur']), got
