"""View and measure the results: completion network alone vs trained with the discriminator.

Test set (default): loads backup/pretrained (completion only, end of phase 1)
and backup/latest (completion + discriminator), fills one hole per image of
data/npy/x_test.npy (same sampler as training, fixed seed: every run and every
checkpoint sees the same holes) and writes
    output/test/grid_NNN.png   8 images per grid: input with the hole | completion only |
                               completion + discriminator | + Poisson blending | ground truth
    output/test/metrics.json   hole L1, hole PSNR, PSNR and SSIM over the whole test set for
    output/test/metrics.md     mean-pixel fill, OpenCV Telea and each network with and without
                               blending (the table is printed too; best value per column in bold)

Your own photos, at their own resolution (white in the mask = hole):
    python test.py --image photo.jpg --mask mask.png --out result.png
    python test.py --image photo.jpg --box 40,60,32,24 --blend    # rectangle x,y,w,h
    python test.py --image photos/ --mask masks/ --out completed/  # masks named like the photos
    python test.py --image photo.jpg --mask mask.png --resize 128 --model pretrained

The architecture, hole sizes and other settings come from BACKUP_DIR/config.json,
saved by train.py, so the graph always matches the checkpoints; --KEY=value of
config.py overrides the rest (e.g. --BATCH_SIZE=4, --BACKUP_DIR=runs/a/backup).
"""
import argparse
import glob
import math
import os

import cli
import config
import cv2
import numpy as np
import tensorflow as tf
from tqdm import tqdm

import backup
import data
import evaluate
import network
import plots
import to_npy

tf1 = tf.compat.v1
GRID_ROWS = 8  # test images per grid_NNN.png
HOLE_STREAM = 2  # test holes come from RandomState([SEED, 2]); train.py uses [SEED] and [SEED, 1]
MAX_PIXELS = 4_000_000  # larger photos need --resize: the activations would need many GB
SIZE_STEP = 4  # the completion network halves the size twice, so H and W must divide by 4


# --- settings and checkpoints ---

def apply_run_config(argv):
    """Apply config.json of BACKUP_DIR, then the command line on top; return the other arguments.

    Architecture keys must agree with the checkpoints, so overriding them is an error.
    """
    config.parse_overrides(argv)  # first pass: learn BACKUP_DIR, reject unknown keys early
    saved = backup.read_run_config()
    if saved is None:
        return config.parse_overrides(argv)
    saved = {k: v for k, v in saved.items() if k in config.keys() and k != 'BACKUP_DIR'}
    config.set_values(saved)
    rest = config.parse_overrides(argv)  # the command line wins
    for key in config.ARCHITECTURE_KEYS:
        if key in saved and saved[key] != getattr(config, key):
            raise cli.UserError(f'the model in {config.BACKUP_DIR}/ was trained with {key}={saved[key]!r}; '
                                f'drop --{key}={getattr(config, key)!r} (test.py reads the architecture '
                                f'from {config.BACKUP_DIR}/config.json)')
    return rest


def find_checkpoints(which=None):
    """{'pretrained': path, 'latest': path} of the checkpoints that exist (only `which` if given)."""
    names = [which] if which else [backup.PRETRAINED, backup.LATEST]
    found = {name: backup.find(name) for name in names}
    found = {name: path for name, path in found.items() if path}
    if not found:
        what = f'no {which} checkpoint' if which else 'no trained model'
        raise cli.UserError(f'{what} in {config.BACKUP_DIR}/: train first with python train.py '
                            f'(e.g. python to_npy.py --demo 200 && python train.py)')
    return found


class Networks:
    """One graph, one Saver and one session per checkpoint, so a batch goes through each in turn."""

    def __init__(self, checkpoints):
        self.graph = tf.Graph()
        self.sessions, self.info = {}, {}
        with self.graph.as_default():
            self.model = network.Model()
            saver = tf1.train.Saver()
            try:
                for name, path in checkpoints.items():
                    self.sessions[name] = sess = network.make_session()
                    backup.restore(sess, saver, path)
                    phase, epoch, _, step = self.model.state(sess)
                    self.info[name] = {'path': path, 'phase': phase, 'epoch': epoch, 'step': step}
            except BaseException:
                self.close()
                raise

    def label(self, name):
        """Column title: what this checkpoint's completion network has been trained with."""
        if self.info[name]['phase'] >= 3:
            return 'completion + discriminator'
        return 'completion only' if name == backup.PRETRAINED else 'completion only (latest)'

    def mean_pixel(self):
        """The training set's mean colour saved in the checkpoint, uint8 [3]."""
        sess = next(iter(self.sessions.values()))
        return data.to_uint8(sess.run(self.model.mean_pixel))

    def complete(self, name, images, masks, batch_stats=False):
        try:
            return self.model.complete(self.sessions[name], images, masks, batch_stats)
        except tf.errors.ResourceExhaustedError:
            raise cli.UserError(f'out of memory completing {images.shape[1]}x{images.shape[2]} images: '
                                f'use --BATCH_SIZE={max(1, config.BATCH_SIZE // 2)} or a smaller --resize')

    def close(self):
        for sess in self.sessions.values():
            sess.close()


# --- the test set ---

def fixed_holes(count):
    """The fixed holes of the test set: masks [count,S,S,1] and corners."""
    return data.sample_holes(np.random.RandomState([config.SEED, HOLE_STREAM]), count)


def complete_batch(nets, names, truth, masks, pixel, batch_stats=False):
    """Every method's output for one batch: {row name: uint8 [N,S,S,3]}.

    Only the masked input reaches the methods; the ground truth is kept for the metrics.
    """
    masked = evaluate.hide_holes(truth, masks)
    rows = {'mean-pixel fill': evaluate.mean_fill(masked, masks, pixel),
            'OpenCV Telea': evaluate.telea(masked, masks)}
    for name in names:
        completed = nets.complete(name, masked, masks)
        rows[nets.label(name)] = completed
        rows[f'{nets.label(name)} + blending'] = evaluate.blend(masked, completed, masks)
        if batch_stats:
            rows[f'{nets.label(name)} (batch statistics)'] = nets.complete(name, masked, masks, True)
    return rows


def grid_titles(nets, names):
    titles = ['input with the hole'] + [nets.label(n).replace(' + ', '\n+ ') for n in names]
    return titles + ['+ Poisson blending', 'ground truth']


def table(rows):
    """Markdown table of {method: {metric: mean}}, the best value per column in bold."""
    formats = {'hole_l1': '{:.2f}', 'hole_psnr': '{:.2f}', 'psnr': '{:.2f}', 'ssim': '{:.4f}'}
    best = {}
    for key, _, higher in evaluate.METRICS:
        shown = [formats[key].format(r[key]) for r in rows.values()]
        values = [float(s) for s in shown]
        best[key] = formats[key].format(max(values) if higher else min(values))
    lines = ['| method | ' + ' | '.join(title for _, title, _ in evaluate.METRICS) + ' |',
             '|---|' + '---:|' * len(evaluate.METRICS)]
    for method, values in rows.items():
        cells = []
        for key, _, _ in evaluate.METRICS:
            text = formats[key].format(values[key])
            cells.append(f'**{text}**' if text == best[key] else text)
        lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


LEGEND = ('Means over the test images. hole L1: mean absolute difference over the hole pixels, '
          '0-255, lower is better. hole PSNR: PSNR over the hole pixels, dB, higher is better. '
          'PSNR, SSIM: whole image (SSIM with an 11x11 Gaussian window, sigma 1.5, per RGB channel), '
          'higher is better. Best value per column in bold.')


def write_report(out_dir, npy, count, nets, names, means, extra):
    models = {nets.label(n): dict(nets.info[n]) for n in names}
    report = {'npy': npy, 'images': count, 'holes': {'seed': [config.SEED, HOLE_STREAM],
                                                     'min': config.HOLE_MIN, 'max': config.HOLE_MAX},
              'checkpoints': models,
              'columns': {key: {'title': title, 'higher_is_better': higher}
                          for key, title, higher in evaluate.METRICS},
              'rows': [{'method': m, **v} for m, v in means.items()],
              'batch_statistics_rows': [{'method': m, **v} for m, v in extra.items()]}
    data.write_json(os.path.join(out_dir, 'metrics.json'), report)
    sources = ', '.join(f'{label} = {info["path"]} (epoch {info["epoch"]}, phase {info["phase"]})'
                        for label, info in models.items())
    text = (f'# Test-set metrics\n\n{count} images of {npy}, one hole each '
            f'({config.HOLE_MIN}-{config.HOLE_MAX} px sides, fixed seed). {sources}.\n\n'
            f'{table(means)}\n\n{LEGEND}\n')
    if extra:
        text += ('\nThe same networks normalised with each batch\'s statistics instead of the '
                 'moving averages (large differences mean the averages lag the weights):\n\n'
                 f'{table(extra)}\n')
    tmp = os.path.join(out_dir, 'metrics.md.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, os.path.join(out_dir, 'metrics.md'))
    return text


def run_test_set(nets, npy, max_grids, batch_stats):
    images = data.load_images(npy)
    count = len(images)
    names = [n for n in (backup.PRETRAINED, backup.LATEST) if n in nets.sessions]
    all_masks, _ = fixed_holes(count)
    pixel = nets.mean_pixel()
    out_dir = os.path.join(config.OUTPUT_DIR, 'test')
    os.makedirs(out_dir, exist_ok=True)
    for old in glob.glob(os.path.join(out_dir, 'grid_*.png')):
        os.remove(old)  # a run on fewer images must not leave the previous run's grids behind
    titles = grid_titles(nets, names)
    sums = {}
    # Whole grids per chunk; the network still sees BATCH_SIZE images at a time.
    chunk = GRID_ROWS * math.ceil(config.BATCH_SIZE / GRID_ROWS)
    with tqdm(total=count, unit='img', desc='test set', dynamic_ncols=True) as bar:
        for start in range(0, count, chunk):
            truth = np.asarray(images[start:start + chunk])
            masks = all_masks[start:start + chunk]
            outputs = complete_batch(nets, names, truth, masks, pixel, batch_stats)
            for method, output in outputs.items():
                totals = sums.setdefault(method, {})
                for key, values in evaluate.measure(output, truth, masks).items():
                    totals[key] = totals.get(key, 0.0) + float(values.sum())
            for offset in range(0, len(truth), GRID_ROWS):
                grid = (start + offset) // GRID_ROWS
                if grid >= max_grids:
                    break
                part = slice(offset, offset + GRID_ROWS)
                columns = ([plots.show_holes(truth[part], masks[part])]
                           + [outputs[nets.label(n)][part] for n in names]
                           + [outputs[f'{nets.label(names[-1])} + blending'][part], truth[part]])
                labels = [f'#{start + offset + r}' for r in range(len(truth[part]))]
                plots.save_grid(os.path.join(out_dir, f'grid_{grid:03d}.png'), columns, titles, labels)
            bar.update(len(truth))
    means = {m: {k: v / count for k, v in values.items()} for m, values in sums.items()}
    extra = {m: v for m, v in means.items() if m.endswith('(batch statistics)')}
    means = {m: v for m, v in means.items() if m not in extra}
    text = write_report(out_dir, npy, count, nets, names, means, extra)
    grids = min(max_grids, math.ceil(count / GRID_ROWS))
    print(f'\n{text}\nwrote {grids} grids and metrics.json, metrics.md to {out_dir}/')


# --- your own photos ---

def read_image(path, what='image'):
    """Decode any image file OpenCV reads: RGB uint8 [H,W,3], or gray [H,W] if what is 'mask'."""
    if not os.path.isfile(path):
        raise cli.UserError(f'{what} {path} not found')
    raw = np.fromfile(path, np.uint8)
    flag = cv2.IMREAD_GRAYSCALE if what == 'mask' else cv2.IMREAD_COLOR
    img = cv2.imdecode(raw, flag) if raw.size else None
    if img is None:
        raise cli.UserError(f'{what} {path} is not a readable image (use .png or .jpg)')
    return img if img.ndim == 2 else img[..., ::-1]


def read_mask(path, shape, image_path):
    """A mask image of the photo's size; pixels brighter than 127 are the hole."""
    gray = read_image(path, 'mask')
    if gray.shape != shape[:2]:
        raise cli.UserError(f'mask {path} is {gray.shape[1]}x{gray.shape[0]} but image {image_path} is '
                            f'{shape[1]}x{shape[0]}; draw the mask at the image\'s size')
    return gray > 127


def box_mask(text, shape):
    """--box x,y,w,h -> bool [H,W] with the rectangle set."""
    try:
        x, y, w, h = (int(v) for v in text.split(','))
    except ValueError:
        raise cli.UserError(f'--box {text}: expected four integers x,y,w,h (e.g. --box 40,60,32,24)')
    height, width = shape[:2]
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise cli.UserError(f'--box {text} does not fit the {width}x{height} image: need w, h > 0, '
                            f'x + w <= {width} and y + h <= {height}')
    hole = np.zeros(shape[:2], bool)
    hole[y:y + h, x:x + w] = True
    return hole


def check_hole(hole, where):
    if not hole.any():
        raise cli.UserError(f'{where} has no hole: paint the area to fill white (> 127) on black')
    if hole.all():
        raise cli.UserError(f'{where} covers the whole image: leave some of the photo visible '
                            f'for the network to complete from')


def _pad(a, height, width):
    """Reflect-pad the bottom and right of [H,W,...] to height x width."""
    extra = ((0, height - a.shape[0]), (0, width - a.shape[1])) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, extra, mode='reflect')


def complete_photo(nets, name, photo, hole, resize=None, blend=False):
    """Complete one photo at its own size; pixels outside the hole come back unchanged.

    Args: photo uint8 [H,W,3]; hole bool [H,W]; resize: complete with the short
    side scaled to this many px and scale the hole's pixels back up.
    """
    masked = evaluate.hide_holes(photo[None], hole[None, ..., None])[0]
    work, work_hole = masked, hole
    if resize:
        scale = resize / min(hole.shape)
        size = (max(1, round(hole.shape[1] * scale)), max(1, round(hole.shape[0] * scale)))
        # Telea first, so the hole's zeros do not bleed into its known neighbours when resampling.
        prefilled = evaluate.telea(masked[None], hole[None, ..., None])[0]
        shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        work = cv2.resize(prefilled, size, interpolation=shrink)
        work_hole = cv2.resize(hole.astype(np.float32), size, interpolation=shrink) > 0
    height, width = work_hole.shape
    if min(height, width) < SIZE_STEP:
        raise cli.UserError(f'image is {width}x{height} px; need at least {SIZE_STEP} px a side')
    if height * width > MAX_PIXELS:
        raise cli.UserError(f'image is {width}x{height} px, too large to complete at full size; '
                            f'add --resize {config.IMAGE_SIZE * 4} (short side in px)')
    # The generator is fully convolutional: pad to a multiple of 4, complete, crop back.
    # The mask is padded the same way, so the reflected hole is a hole, not black known pixels.
    padded_h, padded_w = -(-height // SIZE_STEP) * SIZE_STEP, -(-width // SIZE_STEP) * SIZE_STEP
    image = _pad(work, padded_h, padded_w)[None]
    mask = _pad(work_hole.astype(np.float32), padded_h, padded_w)[None, ..., None]
    completed = nets.complete(name, image, mask)[0, :height, :width]
    if resize:
        completed = cv2.resize(completed, (hole.shape[1], hole.shape[0]), interpolation=cv2.INTER_CUBIC)
    completed = np.where(hole[..., None], completed, masked)
    if blend:
        completed = evaluate.blend(masked[None], completed[None], hole[None, ..., None])[0]
    return completed


def _image_files(folder):
    return sorted(p for p in glob.glob(os.path.join(folder, '*')) if p.lower().endswith(to_npy.EXTENSIONS))


def user_jobs(args):
    """[(image path, mask path or None, output path)] for --image FILE or --image DIR."""
    if os.path.isdir(args.image):
        images = _image_files(args.image)
        if not images:
            raise cli.UserError(f'no images ({", ".join(to_npy.EXTENSIONS)}) in {args.image}/')
        if args.mask and not os.path.isdir(args.mask):
            raise cli.UserError(f'--image {args.image} is a folder, so --mask must be a folder of '
                                f'masks named like the images')
        masks = {}
        if args.mask:
            masks = {os.path.splitext(os.path.basename(p))[0]: p for p in _image_files(args.mask)}
        out_dir = args.out or os.path.join(config.OUTPUT_DIR, 'test', 'completed')
        jobs = []
        for path in images:
            stem = os.path.splitext(os.path.basename(path))[0]
            if args.mask and stem not in masks:
                raise cli.UserError(f'no mask for {path} in {args.mask}/ (expected {stem}.png)')
            jobs.append((path, masks.get(stem), os.path.join(out_dir, f'{stem}.png')))
        return jobs
    if args.mask and os.path.isdir(args.mask):
        raise cli.UserError(f'--mask {args.mask} is a folder; give a mask file for --image {args.image}')
    stem = os.path.splitext(os.path.basename(args.image))[0]
    out = args.out or os.path.join(config.OUTPUT_DIR, 'test', f'{stem}_completed.png')
    if os.path.isdir(out):
        out = os.path.join(out, f'{stem}_completed.png')
    return [(args.image, args.mask, out)]


def write_image(path, rgb):
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    ok, encoded = cv2.imencode(os.path.splitext(path)[1], rgb[..., ::-1])
    if not ok:
        raise cli.UserError(f'could not encode {path}')
    encoded.tofile(path)


def load_user_images(args):
    """[(photo, hole, output path)], every file read and checked before the networks are built."""
    work = []
    for image_path, mask_path, out in user_jobs(args):
        if not cv2.haveImageWriter(out):
            raise cli.UserError(f'cannot write {out}: use a .png or .jpg file name')
        photo = read_image(image_path)
        if mask_path:
            hole, where = read_mask(mask_path, photo.shape, image_path), f'mask {mask_path}'
        else:
            hole, where = box_mask(args.box, photo.shape), f'--box {args.box}'
        check_hole(hole, where)
        work.append((photo, hole, out))
    return work


def run_user_images(nets, name, work, args):
    for photo, hole, out in tqdm(work, unit='img', desc='completing', disable=len(work) < 2):
        write_image(out, complete_photo(nets, name, photo, hole, args.resize, args.blend))
        print(f'wrote {out} ({photo.shape[1]}x{photo.shape[0]}, {int(hole.sum())} hole px, '
              f'{nets.label(name)}{" + blending" if args.blend else ""})')


# --- command line ---

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1] + '\n' + config.help_text())
    parser.add_argument('--npy', help='test images (default NPY_DIR/x_test.npy)')
    parser.add_argument('--grids', type=int, default=None, metavar='N',
                        help='write only the first N grids (the table still covers every image)')
    parser.add_argument('--batch-stats', action='store_true',
                        help='also measure the networks with batch statistics (extra table)')
    parser.add_argument('--image', help='a photo, or a folder of photos, to complete')
    parser.add_argument('--mask', help='mask image (white = hole) of the same size, or a folder of them')
    parser.add_argument('--box', metavar='X,Y,W,H', help='rectangular hole instead of --mask, px')
    parser.add_argument('--out', help='output file (or folder for a folder of photos)')
    parser.add_argument('--resize', type=int, metavar='N', help='scale the short side to N px first')
    parser.add_argument('--blend', action='store_true', help='Poisson-blend the completion (--image)')
    parser.add_argument('--model', choices=[backup.PRETRAINED, backup.LATEST],
                        help='checkpoint to use (default: latest for --image, both for the test set)')
    args = parser.parse_args(argv)
    if args.image:
        if not args.mask and not args.box:
            raise cli.UserError('--image needs a hole: --mask FILE (white = hole) or --box x,y,w,h')
        if args.mask and args.box:
            raise cli.UserError('give --mask or --box, not both')
        if args.resize is not None and args.resize < SIZE_STEP:
            raise cli.UserError(f'--resize {args.resize}: need at least {SIZE_STEP} px')
        if args.npy or args.grids is not None or args.batch_stats:
            raise cli.UserError('--npy, --grids and --batch-stats are for the test set, not --image')
    else:
        used = [f'--{k}' for k in ('mask', 'box', 'out', 'resize') if getattr(args, k)]
        used += ['--blend'] if args.blend else []
        if used:
            raise cli.UserError(f'{" ".join(used)}: only with --image PHOTO (the test-set table '
                                f'always shows the networks with and without blending)')
        if args.grids is not None and args.grids < 0:
            raise cli.UserError(f'--grids {args.grids}: need 0 or more')
    return args


def main(argv):
    args = parse_args(apply_run_config(argv))
    found = find_checkpoints(args.model)
    # Every input is checked before the networks are built, so a mistake costs no waiting.
    if args.image:
        work = load_user_images(args)
        name = backup.LATEST if backup.LATEST in found else backup.PRETRAINED
        if not args.model and name == backup.PRETRAINED:
            print(f'note: no latest checkpoint in {config.BACKUP_DIR}/; using {found[name]}')
        found = {name: found[name]}
    else:
        npy = args.npy or data.npy_path('test')
        if args.npy and not os.path.exists(npy):
            raise cli.UserError(f'--npy {npy} not found')
        data.load_images(npy)
        if not args.model and len(found) == 1:
            (only, path), = found.items()
            missing = backup.LATEST if only == backup.PRETRAINED else backup.PRETRAINED
            print(f'note: {config.BACKUP_DIR}/ has no {missing} checkpoint; showing {path} only')
    print(f'device: {network.device_name()}; IMAGE_SIZE={config.IMAGE_SIZE} LOCAL_SIZE={config.LOCAL_SIZE} '
          f'MASK_CHANNEL={config.MASK_CHANNEL} holes {config.HOLE_MIN}-{config.HOLE_MAX} px')
    nets = Networks(found)
    try:
        for name, info in nets.info.items():
            print(f'{nets.label(name)}: {info["path"]} (epoch {info["epoch"]}, phase {info["phase"]})')
        if args.image:
            run_user_images(nets, name, work, args)
        else:
            run_test_set(nets, npy, math.inf if args.grids is None else args.grids, args.batch_stats)
    finally:
        nets.close()
    return 0


if __name__ == '__main__':
    cli.run(main)
