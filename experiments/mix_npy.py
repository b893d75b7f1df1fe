"""A training set of two sources: one NPY_DIR whole, and the photos of a second that a held-out
set of the same source did not pick (the shipped model's CelebA question, experiments/README.md).

    python experiments/mix_npy.py OUT_NPY_DIR --base UTK_NPY_DIR --extra CELEBA_NPY_DIR \
        --skip-like HELDOUT_NPY_DIR

OUT_NPY_DIR gets x_train.npy = the base's training images followed by the extra's picks after the
first len(HELDOUT) ones, and the base's x_val.npy and x_test.npy: the validation and test faces
stay the base's. to_npy.py's pick order is prefix-stable (the same SEED picks the same photos first
whatever NUM_IMAGES is), so the first picks of the extra set are the held-out set's photos; this
is checked, image for image, before anything is written.
"""
import argparse
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from glcic import cli  # noqa: E402  (quiets TensorFlow's C++ logs before anything imports it)
import numpy as np  # noqa: E402

from glcic import atomic, data, errors  # noqa: E402

SPLITS = ('train', 'val', 'test')


def picks(npy_dir):
    """Every image of a to_npy.py folder in its pick order (train, val, test)."""
    parts = [np.load(os.path.join(npy_dir, f'x_{s}.npy'), mmap_mode='r')
             for s in SPLITS if os.path.exists(os.path.join(npy_dir, f'x_{s}.npy'))]
    return np.concatenate(parts)


def mix(out_dir, base_dir, extra_dir, heldout_dir):
    if os.path.exists(out_dir):
        raise errors.UserError(f'{out_dir} exists: give a new folder')
    heldout, extra = picks(heldout_dir), picks(extra_dir)
    if len(extra) <= len(heldout) or not np.array_equal(extra[:len(heldout)], heldout):
        raise errors.UserError(f'the first {len(heldout)} picks of {extra_dir} are not {heldout_dir}\'s images: '
                               f'make both with the same --src, SEED and IMAGE_SIZE')
    train = np.concatenate([np.load(os.path.join(base_dir, 'x_train.npy')), extra[len(heldout):]])
    os.makedirs(out_dir)
    np.save(os.path.join(out_dir, 'x_train.npy'), train)
    for split in ('val', 'test'):
        shutil.copy2(os.path.join(base_dir, f'x_{split}.npy'), out_dir)
    with open(os.path.join(base_dir, 'meta.json')) as f:
        meta = json.load(f)
    meta.update(source=[meta['source'], f'{extra_dir} picks {len(heldout)}-{len(extra) - 1}'],
                train=len(train), mean_pixel_rgb=data.mean_rgb_listed(train))
    atomic.write_json(os.path.join(out_dir, 'meta.json'), meta)
    print(f'wrote {out_dir}: {len(train)} train ({len(train) - len(extra) + len(heldout)} of {base_dir}, '
          f'{len(extra) - len(heldout)} of {extra_dir}), val and test of {base_dir}')


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out')
    parser.add_argument('--base', required=True)
    parser.add_argument('--extra', required=True)
    parser.add_argument('--skip-like', required=True, dest='heldout')
    args = parser.parse_args(argv)
    mix(args.out, args.base, args.extra, args.heldout)
    return 0


if __name__ == '__main__':
    cli.run(main)
