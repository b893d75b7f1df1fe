"""Does the realism number (glcic/realism.py) see what it should? Fills of known kinds on real faces.

    python experiments/realism_check.py NPY [--images 1000] [--repeats 20] [--out FILE.json]

NPY: an x_test.npy of faces never trained on (to_npy.py's). Each fill replaces the hole of the
test holes (test.py's, fixed seed) and is scored as test.py scores a method: the even images'
fills against the odd images' real holes. `real` is the truth itself (chance is right); the
real-against-real spread over --repeats random halvings gives the score's noise at this size.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cv2  # noqa: E402
import numpy as np  # noqa: E402

import config  # noqa: E402
from glcic import data, evaluate, realism  # noqa: E402


def paste(truth, masks, fill):
    hole = masks[..., 0] > 0.5
    out = truth.copy()
    out[hole] = fill[hole]
    return out


def fills(truth, masks):
    """{name: uint8 images}: the truth with its hole filled in known ways."""
    rng = np.random.RandomState(0)
    f = truth.astype(np.float32)
    blur = lambda sigma: np.stack([cv2.GaussianBlur(image, (0, 0), sigma) for image in truth])  # noqa: E731
    cast = f.copy()
    cast[..., 0] += 12
    shifted = np.roll(truth, (4, 4), axis=(1, 2))
    masked = evaluate.hide_holes(truth, masks)
    return {
        'real': truth,
        'colour cast +12 red': paste(truth, masks, np.clip(cast, 0, 255).astype(np.uint8)),
        'colour cast +6 red': paste(truth, masks, np.clip(f + [6, 0, 0], 0, 255).astype(np.uint8)),
        'seam (truth shifted 4 px)': paste(truth, masks, shifted),
        'blur sigma 1.5': paste(truth, masks, blur(1.5)),
        'blur sigma 4': paste(truth, masks, blur(4.0)),
        'noise sigma 12': paste(truth, masks, np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8)),
        'OpenCV Telea': evaluate.telea(masked, masks),
        'mean-pixel fill': evaluate.mean_fill(masked, masks, data.mean_rgb(truth).round().astype(np.uint8)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('npy')
    parser.add_argument('--images', type=int, default=1000)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--out')
    args = parser.parse_args(argv)
    truth = np.asarray(data.load_images(args.npy)[:args.images])
    count = len(truth)
    config.IMAGE_SIZE = truth.shape[1]
    masks, _ = data.test_holes(count)
    real = realism.features(truth, masks)
    rows = {}
    for name, images in fills(truth, masks).items():
        start = time.perf_counter()
        rows[name] = realism.score(realism.features(images, masks), real)
        print(f'{name:28s} {rows[name]:.3f}  ({time.perf_counter() - start:.1f} s)', flush=True)
    spread = []
    for seed in range(args.repeats):  # real against real, other halvings
        order = np.random.RandomState(seed + 1).permutation(count)
        spread.append(realism.score(real[order], real[order]))
    result = {'npy': args.npy, 'images': count, 'image_size': int(truth.shape[1]),
              'holes': [config.HOLE_MIN, config.HOLE_MAX], 'scores': rows,
              'real_against_real': {'mean': float(np.mean(spread)), 'sd': float(np.std(spread, ddof=1)),
                                    'repeats': args.repeats},
              'binomial_95': float(1.96 * np.sqrt(0.25 / count))}
    print(f'real against real over {args.repeats} halvings: {np.mean(spread):.3f} +- {np.std(spread, ddof=1):.3f} (SD); '
          f'binomial 95 % half-width {1.96 * np.sqrt(0.25 / count):.3f}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
