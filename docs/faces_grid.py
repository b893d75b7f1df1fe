"""Draw docs/faces_grid.png, README's first picture: a public-domain face completed by a model.

    python docs/faces_grid.py --BACKUP_DIR=runs/faces/backup   # pretrained + latest of one run
    python docs/faces_grid.py --pretrained A/backup/pretrained --latest B/backup/latest-900
    python docs/faces_grid.py --shipped     # the shipped face model (models/faces128/) against Telea

Rows: holes over an eye, the nose, the mouth and the other eye of the NASA portrait in
docs/examples/astronaut.png (public domain, see docs/examples/README.md), cropped as UTKFace
frames its faces and scaled to the model's IMAGE_SIZE. Columns: input with the hole | completion only (the phase-1 checkpoint) |
completion + discriminator (a phase-3 checkpoint) | the latter Poisson-blended | ground truth.
With --shipped: input | OpenCV Telea | the shipped model | + blending | ground truth.
The model must be trained on real faces; which one made the committed picture is in QUALITY.md.
"""
import argparse
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from glcic import cli  # noqa: E402  first: it quiets TensorFlow's C++ logs
import config  # noqa: E402
from glcic import backup, blending, evaluate, inference, photos, plots, shipped  # noqa: E402
from glcic.errors import UserError  # noqa: E402

PHOTO = os.path.join(ROOT, 'docs', 'examples', 'astronaut.png')
CROP = (14, 8, 100)  # x, y, side in the 128x128 example: the face framed as in UTKFace's photos
# Holes as (x, y, width, height), fractions of the side, within the training holes' sizes.
HOLES = {'left eye': (0.24, 0.34, 0.24, 0.17), 'nose': (0.42, 0.44, 0.2, 0.22),
         'mouth': (0.32, 0.66, 0.34, 0.16), 'right eye': (0.54, 0.34, 0.24, 0.17)}


def holes(size):
    """One boolean [size,size] mask per row of HOLES."""
    return np.stack([photos.rectangle(*(round(v * size) for v in box), (size, size)) for box in HOLES.values()])


def framed_face(size):
    face = cv2.cvtColor(cv2.imread(PHOTO), cv2.COLOR_BGR2RGB)
    x, y, side = CROP
    return cv2.resize(face[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)


def draw_shipped(out):
    found = shipped.use()
    face, masks = framed_face(config.IMAGE_SIZE), holes(config.IMAGE_SIZE)
    nets = inference.Networks(found)
    try:
        completed = np.stack([inference.complete_photo(nets, shipped.NAME, face, m) for m in masks])
    finally:
        nets.close()
    stack = masks[..., None]
    truth = np.repeat(face[None], len(masks), axis=0)
    masked = evaluate.hide_holes(truth, stack)
    plots.save_grid(out, [plots.show_holes(truth, stack), evaluate.telea(masked, stack), completed,
                          blending.blend(masked, completed, stack), truth],
                    ['input', 'OpenCV Telea', 'shipped model', '+ blending', 'ground truth'], row_labels=list(HOLES))
    print(f'wrote {out}: {shipped.describe()}')
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pretrained', help='completion-only checkpoint (default BACKUP_DIR/pretrained)')
    parser.add_argument('--latest', help='phase-3 checkpoint (default the newest in BACKUP_DIR)')
    parser.add_argument('--shipped', action='store_true', help='the shipped face model against OpenCV Telea')
    parser.add_argument('--out', default=os.path.join(ROOT, 'docs', 'faces_grid.png'))
    args, rest = parser.parse_known_args(argv)
    if args.shipped:
        return draw_shipped(args.out)
    if args.latest:  # the architecture comes from that run's config.json
        rest = [f'--BACKUP_DIR={os.path.dirname(args.latest)}', *rest]
    leftover = backup.apply_run_config(rest)
    if leftover:
        parser.error(f'unknown arguments: {" ".join(leftover)}')
    found = {backup.PRETRAINED: args.pretrained or backup.find(backup.PRETRAINED),
             backup.LATEST: args.latest or backup.find(backup.LATEST)}
    missing = [name for name, path in found.items() if not path]
    if missing:
        raise UserError(f'no {" or ".join(missing)} checkpoint in {config.BACKUP_DIR}/: name it with '
                            f'--pretrained / --latest')
    size = config.IMAGE_SIZE
    face = framed_face(size)
    masks = holes(size)
    nets = inference.Networks(found)
    try:
        for name, info in nets.info.items():
            print(f'{name}: {info["path"]} (phase {info["phase"]}, epoch {info["epoch"]}, step {info["step"]})')
        if nets.info[backup.LATEST]['phase'] < 3:
            print(f'note: {found[backup.LATEST]} has not trained with the discriminators yet')
        only = np.stack([inference.complete_photo(nets, backup.PRETRAINED, face, m) for m in masks])
        adversarial = np.stack([inference.complete_photo(nets, backup.LATEST, face, m) for m in masks])
    finally:
        nets.close()
    stack = masks[..., None]
    truth = np.repeat(face[None], len(masks), axis=0)
    blended = blending.blend(evaluate.hide_holes(truth, stack), adversarial, stack)
    plots.save_grid(args.out, [plots.show_holes(truth, stack), only, adversarial, blended, truth],
                    ['input', 'completion only', 'completion + discriminator', '+ blending', 'ground truth'],
                    row_labels=list(HOLES))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    cli.run(main)
