"""The command line for judging a trained model: the test set's grids and table, or your own photos.

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
    python test.py --image photo.png        # a PNG's transparent pixels are the hole
    python test.py --image photo.jpg --box 40,60,32,24 --blend    # rectangle x,y,w,h
    python test.py --image photos/ --mask masks/ --out completed/  # masks named like the photos
    python test.py --image photo.jpg --mask mask.png --resize 128 --model pretrained
An existing output file is replaced only with --overwrite, and never an input.

The architecture (config.ARCHITECTURE_KEYS) comes from BACKUP_DIR/config.json, saved
by train.py, so the graph always matches the checkpoints; config.py and --KEY=value
decide the rest (e.g. --BATCH_SIZE=4, --BACKUP_DIR=runs/a/backup --NPY_DIR=runs/a/npy).
Hole sizes that do not fit the model's LOCAL_SIZE are the run's own.
"""
import argparse
import collections
import contextlib
import json
import math
import os
import re

from glcic import cli
import config
import numpy as np
from tqdm import tqdm

import network
from glcic import atomic, backup, blending, data, errors, evaluate, inference, photos, plots, realism, replicas, shipped

GRID_ROWS = 8  # test images per grid_NNN.png
GRID_LIST = 'grids.json'  # the grids test.py wrote in OUTPUT_DIR/test: the only files it deletes


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
        rows[f'{nets.label(name)} + blending'] = blending.blend(masked, completed, masks)
        if batch_stats:
            rows[f'{nets.label(name)} (batch statistics)'] = nets.complete(name, masked, masks, True)
    return rows


def grid_titles(nets, names):
    titles = ['input with the hole'] + [nets.label(n).replace(' + ', '\n+ ') for n in names]
    return titles + ['+ Poisson blending', 'ground truth']


def write_report(out_dir, npy, count, nets, names, means, extra):
    models = {nets.label(n): dict(nets.info[n]) for n in names}
    report = {'npy': npy, 'images': count, 'holes': {'seed': [config.SEED, data.STREAMS['test_holes']],
                                                     'min': config.HOLE_MIN, 'max': config.HOLE_MAX},
              'checkpoints': models,
              'columns': {key: {'title': title, 'best': better}
                          for key, title, better in evaluate.METRICS if key in next(iter(means.values()))},
              'rows': [{'method': m, **v} for m, v in means.items()],
              'batch_statistics_rows': [{'method': m, **v} for m, v in extra.items()]}
    atomic.write_json(os.path.join(out_dir, 'metrics.json'), report)
    sources = ', '.join(f'{label} = {info["path"]} (epoch {info["epoch"]}, phase {info["phase"]})'
                        for label, info in models.items())
    what = (f'{count} images of {npy}, one hole each ({config.HOLE_MIN}-{config.HOLE_MAX} px sides, '
            f'fixed seed). {sources}.')
    if 'realism' in next(iter(means.values())):
        what += (f' realism: a set of real faces scores within about {realism.interval(count):.3f} of 0.5 '
                 f'(95 %) at {count} images.')
    text = evaluate.report(what, means, extra)
    atomic.write_text(os.path.join(out_dir, 'metrics.md'), text)
    return text


def remove_old_grids(out_dir):
    """Delete the grids the last run listed in GRID_LIST, so a run on fewer images leaves none
    of them behind. Other files are never deleted, even where OUTPUT_DIR is another run's folder."""
    path = os.path.join(out_dir, GRID_LIST)
    try:
        with open(path) as f:
            names = json.load(f)
    except (OSError, ValueError):
        names = []  # no list yet, or a damaged one: delete nothing
    for name in names if isinstance(names, list) else []:
        if isinstance(name, str) and re.fullmatch(r'grid_\d+\.png', name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out_dir, name))
    atomic.write_json(path, [])


def write_grid(out_dir, written, name, *grid):
    """Write plots.save_grid(path, *grid) as `name`, added to GRID_LIST first so that a crash
    after the write still lists it; a write that fails (a full disk) takes it off again."""
    written.append(name)
    atomic.write_json(os.path.join(out_dir, GRID_LIST), written)
    try:
        plots.save_grid(os.path.join(out_dir, name), *grid)
    except OSError:
        written.remove(name)
        with contextlib.suppress(OSError):  # if this fails too, a listed grid that is missing harms nothing
            atomic.write_json(os.path.join(out_dir, GRID_LIST), written)
        raise


def run_test_set(nets, npy, max_grids, batch_stats):
    images = data.load_images(npy)
    count = len(images)
    names = list(nets.sessions)  # pretrained then latest, or the one --model named
    all_masks, _ = data.test_holes(count)
    pixel = nets.mean_pixel()
    out_dir = os.path.join(config.OUTPUT_DIR, 'test')
    os.makedirs(out_dir, exist_ok=True)
    remove_old_grids(out_dir)
    written = []
    titles = grid_titles(nets, names)
    identity = evaluate.FaceIdentity.load()
    if identity is None:
        print(f'note: no identity column: {evaluate.FaceIdentity.INSTALL} adds it')
    sums, seen = {}, collections.defaultdict(list)  # seen: each method's realism features
    # Whole grids per chunk; the network still sees BATCH_SIZE images at a time.
    chunk = GRID_ROWS * math.ceil(config.BATCH_SIZE / GRID_ROWS)
    with tqdm(total=count, unit='img', desc='test set', dynamic_ncols=True) as bar:
        for start in range(0, count, chunk):
            truth = np.asarray(images[start:start + chunk])
            masks = all_masks[start:start + chunk]
            outputs = complete_batch(nets, names, truth, masks, pixel, batch_stats)
            reference = identity.reference(truth) if identity else None
            seen['ground truth'].append(realism.features(truth, masks))
            for method, output in outputs.items():
                totals = sums.setdefault(method, {})
                for key, values in evaluate.measure(output, truth, masks, identity, reference).items():
                    totals[key] = totals.get(key, 0.0) + float(values.sum())
                seen[method].append(realism.features(output, masks))
            for offset in range(0, len(truth), GRID_ROWS):
                grid = (start + offset) // GRID_ROWS
                if grid >= max_grids:
                    break
                part = slice(offset, offset + GRID_ROWS)
                columns = ([plots.show_holes(truth[part], masks[part])]
                           + [outputs[nets.label(n)][part] for n in names]
                           + [outputs[f'{nets.label(names[-1])} + blending'][part], truth[part]])
                labels = [f'#{start + offset + r}' for r in range(len(truth[part]))]
                write_grid(out_dir, written, f'grid_{grid:03d}.png', columns, titles, labels)
            bar.update(len(truth))
    means = {m: {k: v / count for k, v in values.items()} for m, values in sums.items()}
    if count >= realism.MIN_IMAGES:
        real = np.concatenate(seen['ground truth'])
        for method in means:
            means[method]['realism'] = realism.score(np.concatenate(seen[method]), real)
    else:
        print(f'note: no realism column: it needs at least {realism.MIN_IMAGES} test images')
    extra = {m: v for m, v in means.items() if m.endswith('(batch statistics)')}
    means = {m: v for m, v in means.items() if m not in extra}
    text = write_report(out_dir, npy, count, nets, names, means, extra)
    grids = min(max_grids, math.ceil(count / GRID_ROWS))
    print(f'\n{text}\nwrote {grids} grids and metrics.json, metrics.md to {out_dir}/')


def run_user_images(nets, name, work, args):
    for photo, hole, out in tqdm(work, unit='img', desc='completing', disable=len(work) < 2):
        photos.write_image(out, inference.complete_photo(nets, name, photo, hole, args.resize, args.blend),
                           args.overwrite)
        print(f'wrote {out} ({photo.shape[1]}x{photo.shape[0]}, {int(hole.sum())} hole px, '
              f'{nets.label(name)}{" + blending" if args.blend else ""})')


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
    parser.add_argument('--overwrite', action='store_true',
                        help='replace output files that exist (never an input)')
    parser.add_argument('--resize', type=int, metavar='N', help='scale the short side to N px first')
    parser.add_argument('--blend', action='store_true', help='Poisson-blend the completion (--image)')
    parser.add_argument('--bfloat16', action='store_true',
                        help='complete in bfloat16: faster on CPUs with bfloat16 instructions, fills within '
                             'a few levels of float32 (BENCHMARKS.md)')
    parser.add_argument('--model', choices=[backup.PRETRAINED, backup.LATEST, backup.BEST, shipped.NAME],
                        help='checkpoint to use (default: latest for --image, both for the test set; '
                             'best: phase 3\'s most realistic epoch; '
                             'shipped: the face model in models/faces128/, used anyway when BACKUP_DIR has none)')
    args = parser.parse_args(argv)
    if args.image:
        if args.mask and args.box:
            raise errors.UserError('give --mask or --box, not both')
        if args.resize is not None and args.resize < network.SIZE_STEP:
            raise errors.UserError(f'--resize {args.resize}: need at least {network.SIZE_STEP} px')
        if args.npy or args.grids is not None or args.batch_stats:
            raise errors.UserError('--npy, --grids and --batch-stats are for the test set, not --image')
    else:
        used = [f'--{k}' for k in ('mask', 'box', 'out', 'resize') if getattr(args, k)]
        used += [flag for flag in ('--blend', '--overwrite') if getattr(args, flag[2:])]
        if used:
            raise errors.UserError(f'{" ".join(used)}: only with --image PHOTO (the test-set table '
                                   f'always shows the networks with and without blending)')
        if args.grids is not None and args.grids < 0:
            raise errors.UserError(f'--grids {args.grids}: need 0 or more')
    return args


def main(argv):
    args = parse_args(backup.apply_run_config(argv))
    found = backup.trained(args.model)
    # Every input is checked before the networks are built, so a mistake costs no waiting.
    if args.image:
        work = photos.load_jobs(args.image, args.mask, args.box, args.out, args.overwrite,
                                lambda what, w, h: inference.check_size(h, w, args.resize, what))
        name = next(n for n in (backup.LATEST, backup.PRETRAINED, backup.BEST, shipped.NAME) if n in found)
        if not args.model and name == backup.PRETRAINED:
            print(f'note: no latest checkpoint in {config.BACKUP_DIR}/; using {found[name]}')
        found = {name: found[name]}
    else:
        npy = args.npy or data.npy_path('test')
        if args.npy and not os.path.exists(npy):
            raise errors.UserError(f'--npy {npy} not found')
        data.load_images(npy)
        photos.make_folder(os.path.join(config.OUTPUT_DIR, 'test'))
        if not args.model and len(found) == 1 and shipped.NAME not in found:
            (only, path), = found.items()
            missing = backup.LATEST if only == backup.PRETRAINED else backup.PRETRAINED
            print(f'note: {config.BACKUP_DIR}/ has no {missing} checkpoint; showing {path} only')
    print(f'device: {replicas.device_name()}; IMAGE_SIZE={config.IMAGE_SIZE} LOCAL_SIZE={config.LOCAL_SIZE} '
          f'MASK_CHANNEL={config.MASK_CHANNEL} holes {config.HOLE_MIN}-{config.HOLE_MAX} px')
    nets = inference.Networks(found, batch_stats=not args.image and args.batch_stats, bfloat16=args.bfloat16)
    try:
        for name, info in nets.info.items():
            print(f'{nets.label(name)}: {info["path"]} (epoch {info["epoch"]}, phase {info["phase"]})')
        if args.image:
            run_user_images(nets, name, work, args)
        else:
            run_test_set(nets, npy, math.inf if args.grids is None else args.grids, args.batch_stats)
    except OSError as error:
        if error.errno not in atomic.WRITE_ERRORS:
            raise
        raise errors.UserError(f'could not write in {config.OUTPUT_DIR}/test/ ({error.strerror or error}); '
                               f'free disk space or fix permissions, then rerun (grids.json lists the grids written)')
    finally:
        nets.close()
    return 0


if __name__ == '__main__':
    cli.run(main)
