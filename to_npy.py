"""Turn a folder of photos into the training and test arrays.

Input:  every .jpg/.jpeg/.png/.bmp/.webp/.gif under IMAGE_DIR (data/images/, recursive),
        or --src DIR; or --demo [N] for N synthetic faces (no photos needed).
Output: NPY_DIR/x_train.npy  uint8 [round(N*TRAIN_RATIO) - V, IMAGE_SIZE, IMAGE_SIZE, 3] RGB
        NPY_DIR/x_val.npy    uint8 [V, ...]: V = VAL_IMAGES of the training share, where that is
                             at most a tenth of it (else 0): phase 3's stop rule scores them
        NPY_DIR/x_test.npy   uint8 [the rest, IMAGE_SIZE, IMAGE_SIZE, 3]
        NPY_DIR/meta.json    counts, size, mean pixel, skipped files and why

NUM_IMAGES photos are picked at random (SEED), centre-cropped to a square and
resized to IMAGE_SIZE. Unreadable files are skipped and listed in meta.json.
The four files are written into a new folder that then replaces NPY_DIR whole (the
old set is kept as NPY_DIR.previous/), and a second to_npy.py on the same NPY_DIR is refused.

    python to_npy.py                      # data/images/ -> data/npy/
    python to_npy.py --src ~/img_align_celeba --NUM_IMAGES=20000
    python to_npy.py --demo 1000          # synthetic faces for the demo
"""
import argparse
import contextlib
import ctypes
import errno
import glob
import multiprocessing
import os
import re
import shutil
import signal
import sys
import time

from glcic import cli
import config
import filelock
import numpy as np
from tqdm import tqdm

from glcic import atomic, data, errors, photos

FILES = ('x_train.npy', 'x_val.npy', 'x_test.npy', 'meta.json')  # one data set; NPY_DIR holds nothing else
PREVIOUS = '.previous'  # NPY_DIR + this: the set the last run replaced
PARTIAL = '.partial-'  # NPY_DIR + this + pid: a set being written
RENAME_EXCHANGE = 2  # renameat2() flag (Linux): swap two paths in one step
AT_FDCWD = -100  # renameat2() directory argument: paths relative to the working directory


def load_square(path):
    """Decode (unless the header says it is too large), centre-crop to a square and resize one image.

    Returns: (uint8 [IMAGE_SIZE,IMAGE_SIZE,3] RGB, None) or (None, reason).
    """
    try:
        img = photos.decode(path)  # IMREAD_COLOR: gray, RGBA, 16-bit and CMYK become 8-bit BGR
    except photos.Unusable as why:
        return None, str(why)
    except OSError as error:
        return None, error.strerror or str(error)
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
    # The workers are forked ignoring Ctrl-C: one still starting when it comes would die of it
    # and could leave the pool's shutdown waiting for it.
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pool = multiprocessing.Pool(workers, _init_worker, (config.as_dict(),))
    finally:
        signal.signal(signal.SIGINT, handler)
    with pool, tqdm(total=min(count, len(paths)), unit='img', desc='decoding') as bar:
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


def target():
    """NPY_DIR with symlinks resolved: the folder a new set replaces (a link to it still works)."""
    return os.path.realpath(config.NPY_DIR)


def cannot_write(error):
    """The one-line error for a data set that could not be written (NPY_DIR is left as it was)."""
    if error.filename and os.path.isfile(error.filename):
        why = f'{error.filename} is a file'
    else:
        why = (error.strerror or str(error)) + (f' ({error.filename})' if error.filename else '')
    return errors.UserError(f'cannot write the data set to {config.NPY_DIR}/: {why}; nothing was '
                            f'changed: choose another NPY_DIR, free disk space or fix the permissions')


@contextlib.contextmanager
def dataset_lock():
    """Hold the lock beside NPY_DIR (NPY_DIR.lock) while a set is made; the OS drops it if the
    process dies. A second to_npy.py on the same NPY_DIR is refused before it decodes anything."""
    path = target() + '.lock'
    lock = filelock.FileLock(path, timeout=0)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock.acquire()
    except filelock.Timeout:
        raise errors.UserError(f'another to_npy.py is writing {config.NPY_DIR}/ (it holds {path}); '
                               f'wait for it to finish, or set NPY_DIR elsewhere')
    except OSError as error:
        raise cannot_write(error)
    try:
        yield
    finally:
        lock.release()


def other_files(folder):
    """Names in folder that no to_npy.py wrote (its files, their temporary files, .gitkeep aside)."""
    temporary = r'\.(x_train\.npy|x_val\.npy|x_test\.npy|meta\.json)\..+\.tmp'  # atomic.replace's names
    return sorted(n for n in os.listdir(folder)
                  if n not in FILES + ('.gitkeep',) and not re.fullmatch(temporary, n))


def check_target():
    """Refuse to replace an NPY_DIR (or its previous set) that holds anything else: the whole
    folder is swapped, so it would go along."""
    for folder in (target(), target() + PREVIOUS):
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise errors.UserError(f'{folder} is not a folder; set NPY_DIR to a folder of its own')
        other = other_files(folder) if os.path.isdir(folder) else []
        if other:
            raise errors.UserError(f'{folder}/ holds {", ".join(other[:3])}{" ..." if other[3:] else ""}, '
                                   f'which to_npy.py did not write, and it replaces the whole folder: '
                                   f'move them out, or set NPY_DIR to a folder of its own')


def remove_partial():
    """Delete the half-written sets of runs that were killed; call with dataset_lock held (then no
    other run is writing one)."""
    for partial in glob.glob(glob.escape(target() + PARTIAL) + '*'):
        if os.path.isdir(partial) and not other_files(partial):
            shutil.rmtree(partial)


def _exchange(a, b):
    """Swap two folders in one step (Linux renameat2); False where the system cannot."""
    if sys.platform != 'linux':
        return False
    rename = getattr(ctypes.CDLL(None, use_errno=True), 'renameat2', None)  # glibc 2.28 and later
    if rename is None:
        return False
    rename.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if rename(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # a file system or kernel without the exchange
    raise OSError(code, os.strerror(code), b)


def swap_in(folder):
    """Make the complete set in folder NPY_DIR; the set it replaces becomes NPY_DIR.previous.

    Readers see the old set or the new one, never a mix: one exchange on Linux; elsewhere two
    renames, between which NPY_DIR is missing for an instant (still never mixed).
    Returns: the previous set's folder, or None if there was none.
    """
    if os.path.isdir(target()) and not os.listdir(target()):
        os.rmdir(target())  # an empty folder holds no set to keep
    if not os.path.lexists(target()):
        os.rename(folder, target())
        return None
    previous = target() + PREVIOUS
    if os.path.lexists(previous):
        shutil.rmtree(previous)  # check_target found nothing but a data set there
    if _exchange(folder, target()):
        os.rename(folder, previous)
    else:
        os.rename(target(), previous)
        try:
            os.rename(folder, target())
        except OSError:
            os.rename(previous, target())
            raise
    return previous


def val_count(n_train):
    """How many of the training share's images become x_val.npy: VAL_IMAGES, unless that is more
    than a tenth of them (then none: training keeps every image)."""
    return config.VAL_IMAGES if 10 * config.VAL_IMAGES <= n_train else 0


def write_dataset(images, source, skipped):
    """Split images into train/test and write them with meta.json as a new NPY_DIR, replacing
    the old set whole (call with dataset_lock held).

    Returns: the meta dict, and the folder now holding the replaced set (None if there was none).
    """
    n_train = min(len(images) - 1, max(1, int(round(len(images) * config.TRAIN_RATIO))))
    n_val = val_count(n_train)
    n_train -= n_val
    meta = {'source': source, 'image_size': config.IMAGE_SIZE, 'train': n_train, 'val': n_val,
            'test': len(images) - n_train - n_val, 'seed': config.SEED,
            'mean_pixel_rgb': data.mean_rgb_listed(images),
            'skipped': len(skipped), 'skipped_files': skipped}
    folder = f'{target()}{PARTIAL}{os.getpid()}'
    try:
        os.mkdir(folder)
        save_npy(os.path.join(folder, 'x_train.npy'), images[:n_train])
        save_npy(os.path.join(folder, 'x_val.npy'), images[n_train:n_train + n_val])
        save_npy(os.path.join(folder, 'x_test.npy'), images[n_train + n_val:])
        atomic.write_json(os.path.join(folder, 'meta.json'), meta)
        previous = swap_in(folder)
    except OSError as error:
        raise cannot_write(error)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # gone after the swap; else a half-written set
    return meta, previous


def no_images_message(src):
    return (f'no usable images in {src}/: put face photos there (any .jpg/.png, e.g. CelebA '
            f'img_align_celeba from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html), '
            f'point --src at a folder, or run python to_npy.py --demo for synthetic faces')


def main(argv):
    rest = config.parse_overrides(argv)  # first, so a bare --demo means the NUM_IMAGES given
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--src', default=None, help=f'folder of photos (default {config.IMAGE_DIR})')
    parser.add_argument('--demo', type=int, nargs='?', const=config.NUM_IMAGES, metavar='N',
                        help='write N synthetic faces instead (default NUM_IMAGES)')
    args = parser.parse_args(rest)
    start = time.time()
    if args.demo is not None:
        count = args.demo
        if count < 2:
            raise errors.UserError(f'--demo {count}: need at least 2 images (one for each split)')
    else:
        src = args.src or config.IMAGE_DIR
        if not os.path.isdir(src):
            raise errors.UserError(no_images_message(src))
    check_target()
    with dataset_lock():
        remove_partial()
        if args.demo is not None:
            from glcic import synthetic
            images, skipped, source = synthetic.faces(count, config.IMAGE_SIZE, config.SEED), {}, 'synthetic'
        else:
            paths = photos.find_images(src)
            if not paths:
                raise errors.UserError(no_images_message(src))
            images, skipped = pick_images(paths, config.NUM_IMAGES)
            source = os.path.abspath(src)
            unreadable = f' ({len(skipped)} files could not be read)' if skipped else ''
            if not len(images):
                raise errors.UserError(no_images_message(src) + unreadable)
            if len(images) < 2:
                raise errors.UserError(f'only one usable image in {src}/{unreadable}; need at least 2 (one for '
                                       f'each split): add photos, or run python to_npy.py --demo for synthetic faces')
        meta, previous = write_dataset(images, source, skipped)
    print(f'wrote {meta["train"]} train + {meta["val"]} validation + {meta["test"]} test images of {config.IMAGE_SIZE}x'
          f'{config.IMAGE_SIZE} to {config.NPY_DIR}/ in {time.time() - start:.1f} s'
          + (f'; skipped {len(skipped)} unreadable files (listed in meta.json)' if skipped else '')
          + (f'; the set it replaced is in {previous}/' if previous else ''))
    if len(images) < config.NUM_IMAGES and args.demo is None:
        print(f'note: only {len(images)} usable images, fewer than NUM_IMAGES={config.NUM_IMAGES}')


if __name__ == '__main__':
    cli.run(main)
