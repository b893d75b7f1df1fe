"""Turn a folder of photos into the training and test arrays.

Input:  every .jpg/.jpeg/.png/.bmp/.webp/.gif under IMAGE_DIR (data/images/, recursive),
        or --src DIR; or --demo [N] for N synthetic faces (no photos needed).
Output: NPY_DIR/x_train.npy  uint8 [round(N*TRAIN_RATIO), IMAGE_SIZE, IMAGE_SIZE, 3] RGB
        NPY_DIR/x_test.npy   uint8 [the rest, IMAGE_SIZE, IMAGE_SIZE, 3]
        NPY_DIR/meta.json    counts, size, mean pixel, skipped files and why

NUM_IMAGES photos are picked at random (SEED), centre-cropped to a square and
resized to IMAGE_SIZE. Unreadable files are skipped and listed in meta.json.

    python to_npy.py                      # data/images/ -> data/npy/
    python to_npy.py --src ~/img_align_celeba --NUM_IMAGES=20000
    python to_npy.py --demo 1000          # synthetic faces for the demo
"""
import argparse
import multiprocessing
import os
import signal
import time

import cli
import config
import numpy as np
from tqdm import tqdm

import atomic
import data
import errors
import photos

MAX_PIXELS = 100_000_000  # larger files are skipped rather than decoded into GBs of memory


def load_square(path):
    """Decode, centre-crop to a square and resize one image.

    Returns: (uint8 [IMAGE_SIZE,IMAGE_SIZE,3] RGB, None) or (None, reason).
    """
    import cv2
    try:
        raw = np.fromfile(path, np.uint8)
    except OSError as error:
        return None, error.strerror or str(error)
    if raw.size == 0:
        return None, 'empty file'
    # IMREAD_COLOR turns grayscale, RGBA, 16-bit and CMYK into 8-bit BGR.
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if img is None:
        return None, 'not a readable image'
    h, w = img.shape[:2]
    if h * w > MAX_PIXELS:
        return None, f'too large ({w}x{h})'
    return photos.square(img, config.IMAGE_SIZE)[:, :, ::-1], None


def _init_worker(values):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the pool
    config.set_values(values)


def _load(path):
    return path, *load_square(path)


def pick_images(paths, count):
    """Decode a random order of paths in parallel until `count` images are usable.

    Returns: (uint8 [<=count,S,S,3], {path: reason} of skipped files).
    """
    order = data.stream('pick').permutation(len(paths))
    images, skipped = [], {}
    workers = max(1, min(os.cpu_count() or 1, len(paths) // 64 + 1))
    with multiprocessing.Pool(workers, _init_worker, (config.as_dict(),)) as pool, \
            tqdm(total=min(count, len(paths)), unit='img', desc='decoding') as bar:
        for path, img, reason in pool.imap(_load, (paths[i] for i in order), chunksize=32):
            if img is None:
                skipped[path] = reason
                continue
            images.append(img)
            bar.update()
            if len(images) == count:
                break
    size = config.IMAGE_SIZE
    return np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8), skipped


def save_npy(path, array):
    """Write atomically: an interrupted run leaves the old file or the new one, never a half."""
    with atomic.replace(path, 'wb') as f:
        np.save(f, array)


def write_dataset(images, source, skipped):
    """Split images into train/test and write them with meta.json; returns the meta dict."""
    n_train = min(len(images) - 1, max(1, int(round(len(images) * config.TRAIN_RATIO))))
    os.makedirs(config.NPY_DIR, exist_ok=True)
    save_npy(data.npy_path('train'), images[:n_train])
    save_npy(data.npy_path('test'), images[n_train:])
    meta = {'source': source, 'image_size': config.IMAGE_SIZE, 'train': n_train,
            'test': len(images) - n_train, 'seed': config.SEED,
            'mean_pixel_rgb': [round(float(v), 2) for v in data.mean_rgb(images)],
            'skipped': len(skipped), 'skipped_files': skipped}
    data.write_json(os.path.join(config.NPY_DIR, 'meta.json'), meta)
    return meta


def no_images_message(src):
    return (f'no usable images in {src}/: put face photos there (any .jpg/.png, e.g. CelebA '
            f'img_align_celeba from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html), '
            f'point --src at a folder, or run python to_npy.py --demo for synthetic faces')


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--src', default=None, help=f'folder of photos (default {config.IMAGE_DIR})')
    parser.add_argument('--demo', type=int, nargs='?', const=-1, metavar='N',
                        help='write N synthetic faces instead (default NUM_IMAGES)')
    args = parser.parse_args(config.parse_overrides(argv))
    start = time.time()
    if args.demo is not None:
        import synthetic
        count = config.NUM_IMAGES if args.demo < 0 else args.demo
        if count < 2:
            raise errors.UserError(f'--demo {count}: need at least 2 images (one for each split)')
        images, skipped, source = synthetic.faces(count, config.IMAGE_SIZE, config.SEED), {}, 'synthetic'
    else:
        src = args.src or config.IMAGE_DIR
        if not os.path.isdir(src):
            raise errors.UserError(no_images_message(src))
        paths = photos.find_images(src)
        if not paths:
            raise errors.UserError(no_images_message(src))
        images, skipped = pick_images(paths, config.NUM_IMAGES)
        source = os.path.abspath(src)
        if len(images) < 2:
            raise errors.UserError(no_images_message(src) + f' ({len(skipped)} files could not be read)')
    meta = write_dataset(images, source, skipped)
    print(f'wrote {meta["train"]} train + {meta["test"]} test images of {config.IMAGE_SIZE}x'
          f'{config.IMAGE_SIZE} to {config.NPY_DIR}/ in {time.time() - start:.1f} s'
          + (f'; skipped {len(skipped)} unreadable files (listed in meta.json)' if skipped else ''))
    if len(images) < config.NUM_IMAGES and args.demo is None:
        print(f'note: only {len(images)} usable images, fewer than NUM_IMAGES={config.NUM_IMAGES}')


if __name__ == '__main__':
    cli.run(main)
