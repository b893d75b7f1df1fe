"""The stop rule's long run: each epoch's held-out scores, where the rule ends phase 3, and
whether phase 3 beats phase 1 alone at equal images.

    python experiments/stop_run.py measure RUN_DIR [RUN_DIR ...] --out experiments/results/stop64r \
        --NPY_DIR=RUN_DIR/npy   # the runs' data set (its x_test.npy is scored)
    python experiments/stop_run.py report --main RUN_DIR --control RUN_DIR \
        --out experiments/results/stop64r --png experiments/stop64-realism.png

RUN_DIR is a train.py run: RUN_DIR/backup (every epoch's checkpoint kept: KEEP_CHECKPOINTS=1000)
and RUN_DIR/output/loss.csv. The control is phase 1 alone resumed from the main run's last
phase-1 checkpoint (experiments/README.md has the commands).

measure  restores each epoch's checkpoint (the one saved at the step of its loss.csv row) and
         scores the completion of the run's test split (test.py's holes): hole PSNR, hole L1,
         the realism number (glcic/realism.py) and dlib's identity distance (first
         IDENTITY_IMAGES faces), as
         OUT/<RUN_DIR's name>.json with per-image PSNR and L1 for paired intervals; OpenCV Telea
         and mean fill once. Measured epochs are kept, so it can run again as the run goes on.
report   joins those scores with loss.csv (d_loss; the validation realism and hole PSNR the
         rule saw), replays the rule (glcic/stopping.py) on the validation scores, and writes
         OUT/epochs.csv, OUT/verdict.md and the plot.
"""
import argparse
import csv
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from glcic import cli  # noqa: E402  (quiets TensorFlow's C++ logs before anything imports it)
import config  # noqa: E402
from glcic import atomic, data, errors, realism, stopping  # noqa: E402
import numpy as np  # noqa: E402
from glcic import plots  # noqa: E402  (sets matplotlib's file-only backend)
from glcic.plots import plt  # noqa: E402

EVAL_BATCH = 32  # images per pass (the numbers do not depend on it)
TAIL = 5  # epochs averaged at the end of each run for the equal-images comparison
BOOTSTRAP = 2000  # resamples of the test faces for the paired hole-PSNR interval
IDENTITY_IMAGES = 400  # dlib's embeddings take about 50 ms a face on 2 cores: the first 400 faces only


def epoch_rows(run_dir):
    rows = plots.read_rows(os.path.join(run_dir, 'output', 'loss.csv'))
    if not rows:
        raise errors.UserError(f'{run_dir}/output/loss.csv holds no rows: is {run_dir} a train.py run?')
    return [{k: float(v) if v not in ('', None) else None for k, v in row.items()} for row in rows]


def read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def scores(filled, truth, masks, real, identity=None, reference=None):
    """Hole PSNR, hole L1, the realism number (`real`: the truth's realism.features) and, with
    dlib (`identity`, `reference`), the identity distance of the first IDENTITY_IMAGES faces; per
    face PSNR and L1 for paired intervals."""
    from glcic import evaluate
    values = {'hole_psnr': evaluate.hole_psnr(filled, truth, masks), 'hole_l1': evaluate.hole_l1(filled, truth, masks)}
    row = {key: float(np.mean(value)) for key, value in values.items()}
    if identity:
        row['identity'] = float(np.mean(identity.distance(filled[:IDENTITY_IMAGES], reference)))
    row['realism'] = realism.score(realism.features(filled, masks), real)
    row['per_image'] = {key: np.round(values[key], 3).tolist() for key in ('hole_psnr', 'hole_l1')}
    return row


def measure(run_dir, out_dir):
    import tensorflow as tf
    from glcic import backup, evaluate, graphs, replicas
    name = os.path.basename(os.path.normpath(run_dir))
    backup_dir = os.path.join(run_dir, 'backup')
    backup.apply_run_config([f'--BACKUP_DIR={backup_dir}', f'--BATCH_SIZE={EVAL_BATCH}'])
    truth = np.asarray(data.load_images(data.npy_path('test')))
    masks, _ = data.test_holes(len(truth))
    masked = evaluate.hide_holes(truth, masks)
    out_path = os.path.join(out_dir, f'{name}.json')
    result = read_json(out_path) or {'run': name, 'test_images': len(truth), 'epochs': {}}
    todo = [row for row in epoch_rows(run_dir) if str(int(row['epoch'])) not in result['epochs']
            and os.path.exists(os.path.join(backup_dir, f'latest-{int(row["step"])}.index'))]
    identity = evaluate.FaceIdentity.load()
    if identity is None:
        print(f'note: no identity numbers: {evaluate.FaceIdentity.INSTALL} adds them')
    reference = identity.reference(truth[:IDENTITY_IMAGES]) if identity else None
    real = realism.features(truth, masks)

    def score(filled):
        return scores(filled, truth, masks, real, identity, reference)

    if 'baselines' not in result:
        result['baselines'] = {'OpenCV Telea': score(evaluate.telea(masked, masks))}
    print(f'{name}: {len(todo)} epochs to measure on {len(truth)} test faces', flush=True)
    with tf.Graph().as_default():
        model = graphs.Inference()
        saver = tf.compat.v1.train.Saver(model.variables)
        sess = replicas.make_session()
    with sess:
        for row in todo:
            backup.restore(sess, saver, os.path.join(backup_dir, f'latest-{int(row["step"])}'))
            entry = {'phase': int(row['phase']), 'step': int(row['step']), **score(model.complete(sess, masked, masks))}
            if 'mean-pixel fill' not in result['baselines']:
                pixel = data.to_uint8(sess.run(model.mean_pixel))
                result['baselines']['mean-pixel fill'] = score(evaluate.mean_fill(masked, masks, pixel))
            result['epochs'][str(int(row['epoch']))] = entry
            atomic.write_json(out_path, result)  # after each epoch: a long measurement can stop any time
            print(f'  epoch {int(row["epoch"]):3d} phase {entry["phase"]}  hole PSNR {entry["hole_psnr"]:6.2f} dB  '
                  f'L1 {entry["hole_l1"]:6.2f}  identity {entry.get("identity", float("nan")):.4f}  '
                  f'realism {entry["realism"]:.3f}', flush=True)
    print(f'wrote {out_path}')


def joined(run_dir, out_dir):
    """loss.csv's rows with the measured scores of each epoch."""
    name = os.path.basename(os.path.normpath(run_dir))
    measured = (read_json(os.path.join(out_dir, f'{name}.json')) or {}).get('epochs', {})
    return [{**row, **{f'test_{k}': v for k, v in measured.get(str(int(row['epoch'])), {}).items()}}
            for row in epoch_rows(run_dir)]


def val_baseline(run_dir, rows):
    """Phase 1's validation hole PSNR, as the rule saw it (the graph's state/val_baseline)."""
    import tensorflow as tf
    step = int(rows[-1]['step'])
    reader = tf.train.load_checkpoint(os.path.join(run_dir, 'backup', f'latest-{step}'))
    return float(reader.get_tensor('state/val_baseline')[1])


def paired_psnr(a, b, seed=0):
    """Mean of b - a over the same faces, and its 95 % bootstrap interval."""
    diff = np.asarray(b) - np.asarray(a)
    rng = np.random.RandomState(seed)
    means = [diff[rng.randint(0, len(diff), len(diff))].mean() for _ in range(BOOTSTRAP)]
    return float(diff.mean()), [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def verdict(main, control, baseline, count):
    phase3 = [r for r in main if r['phase'] >= 3]
    realism_val = [r['val_realism'] for r in phase3]
    psnr_val = [r['val_hole_psnr'] for r in phase3]
    fires = stopping.first_stop(realism_val, psnr_val, baseline, config.STOP_EPOCHS, config.STOP_LOSS)
    kept = stopping.best_epoch(realism_val[:fires] if fires else realism_val,
                               psnr_val[:fires] if fires else psnr_val, baseline)
    scored = [r for r in phase3 if 'test_realism' in r]
    best_test = min(scored, key=lambda r: r['test_realism']) if scored else None
    control_by_epoch = {int(r['epoch']): r for r in control if 'test_realism' in r}
    pairs = [(r, control_by_epoch[int(r['epoch'])]) for r in scored if int(r['epoch']) in control_by_epoch]
    half = realism.interval(count)
    lines = [f'Validation: the rule saw {len(phase3)} phase-3 epochs (STOP_EPOCHS={config.STOP_EPOCHS}, '
             f'STOP_LOSS={config.STOP_LOSS}, phase 1 baseline {baseline:.2f} dB on the validation faces).', '',
             f'- The rule ends phase 3 after phase-3 epoch {fires} (epoch {int(phase3[fires - 1]["epoch"])})' if fires
             else f'- The rule does not fire in these {len(phase3)} phase-3 epochs',
             f'- It keeps (backup/best) phase-3 epoch {kept + 1} (epoch {int(phase3[kept]["epoch"])}), '
             f'validation realism {realism_val[kept]:.3f}' if kept is not None else '- It keeps no epoch']
    if best_test:
        lines.append(f'- The most realistic epoch on the {count} test faces: epoch {int(best_test["epoch"])}, '
                     f'{best_test["test_realism"]:.3f} (each epoch\'s score ± {half:.3f}, 95 %)')
    if pairs:
        tail = pairs[-TAIL:]
        m3 = float(np.mean([p['test_realism'] for p, _ in tail]))
        m1 = float(np.mean([c['test_realism'] for _, c in tail]))
        diff, interval = paired_psnr(tail[-1][1]['test_per_image']['hole_psnr'], tail[-1][0]['test_per_image']['hole_psnr'])
        lines += ['', f'Phase 3 against phase 1 alone at equal images (epochs {int(tail[0][0]["epoch"])}-'
                  f'{int(tail[-1][0]["epoch"])}, {count} test faces):', '',
                  '| | phase 3 | phase 1 alone |', '|---|---:|---:|']
        for key, label in (('test_realism', 'realism, mean of the epochs'), ('test_hole_psnr', 'hole PSNR (dB)'),
                           ('test_hole_l1', 'hole L1'), ('test_identity', 'identity distance')):
            if key in tail[-1][0]:
                lines.append(f'| {label} | {np.mean([p[key] for p, _ in tail]):.3f} | '
                             f'{np.mean([c[key] for _, c in tail]):.3f} |')
        lines += ['', f'- Realism, phase 3 minus phase 1 alone: {m3 - m1:+.3f}; one epoch\'s score has a 95 % '
                  f'half-width of {half:.3f}, a difference of two {half * np.sqrt(2):.3f} (the mean of '
                  f'{len(tail)} epochs of one run shares its test faces, so not much less).',
                  f'- Hole PSNR at epoch {int(tail[-1][0]["epoch"])}, phase 3 minus phase 1 alone on the same '
                  f'faces: {diff:+.2f} dB (95 % bootstrap {interval[0]:+.2f} to {interval[1]:+.2f}).']
    return '\n'.join(lines) + '\n', fires and int(phase3[fires - 1]['epoch']), \
        kept is not None and int(phase3[kept]['epoch'])


def write_csv(rows, path):
    fields = [k for k in dict.fromkeys(k for r in rows for k in r) if k != 'test_per_image']
    with atomic.replace(path, newline='') as f:
        writer = csv.DictWriter(f, fields, extrasaction='ignore')
        writer.writeheader()
        writer.writerows({k: '' if r.get(k) is None else (f'{r[k]:.6g}' if isinstance(r[k], float) else r[k])
                          for k in fields} for r in rows)


def draw(main, control, baselines, fires, kept, count, png):
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    panels = (('d_loss', 'd_loss (1.39 = chance)'), ('realism', 'realism (0.5 = real), lower is better'),
              ('hole_psnr', 'hole PSNR (dB)'), ('hole_l1', 'hole L1 (0-255)'),
              ('identity', 'identity distance'), ('val', 'validation realism (what the rule sees)'))
    for ax, (key, label) in zip(axes.flat, panels):
        for rows, name, style in ((main, 'GLCIC (phases 1-3)', '-'), (control, 'phase 1 alone', '--')):
            column = {'d_loss': 'd_loss', 'val': 'val_realism'}.get(key, f'test_{key}')
            points = [(r['epoch'], r[column]) for r in rows if r.get(column) is not None]
            if points:
                ax.plot(*zip(*points), style, marker='o', ms=2.5, label=name)
        if key == 'realism':
            points = [(r['epoch'], r['test_realism']) for r in main if r.get('test_realism') is not None]
            if points:
                x, y = map(np.array, zip(*points))
                half = realism.interval(count)
                ax.fill_between(x, y - half, y + half, alpha=0.15, color='C0')
        if key in ('realism', 'hole_psnr', 'hole_l1', 'identity') and 'OpenCV Telea' in baselines:
            value = baselines['OpenCV Telea'].get(key)
            if value is not None:
                ax.axhline(value, color='0.5', ls=':', label='OpenCV Telea')
        phase3 = [r['epoch'] for r in main if r['phase'] >= 3]
        if phase3:
            ax.axvspan(min(phase3) - 1, max(phase3), color='0.93', zorder=0)
        if fires:
            ax.axvline(fires, color='C3', ls='--', lw=1, label='the rule fires')
        if kept:
            ax.axvline(kept, color='C2', ls='-.', lw=1, label='backup/best')
        ax.set_xlabel('epoch (phase 3 shaded; equal epochs = equal images)')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes.flat[1].legend(fontsize=8)
    fig.tight_layout()
    plots.save_figure(fig, png, dpi=100)


def report(main_dir, control_dir, out_dir, png):
    main, control = joined(main_dir, out_dir), joined(control_dir, out_dir)
    name = os.path.basename(os.path.normpath(main_dir))
    result = read_json(os.path.join(out_dir, f'{name}.json')) or {}
    count = result.get('test_images', 0)
    baseline = val_baseline(main_dir, main)
    text, fires, kept = verdict(main, control, baseline, count)
    for rows, run_dir in ((main, main_dir), (control, control_dir)):
        write_csv(rows, os.path.join(out_dir, f'{os.path.basename(os.path.normpath(run_dir))}.epochs.csv'))
    telea = result.get('baselines', {}).get('OpenCV Telea', {})
    if telea:
        text += (f'\nOpenCV Telea on the same faces: realism {telea["realism"]:.3f}, hole PSNR '
                 f'{telea["hole_psnr"]:.2f} dB, L1 {telea["hole_l1"]:.2f}.\n')
    atomic.write_text(os.path.join(out_dir, 'verdict.md'), text)
    draw(main, control, result.get('baselines', {}), fires, kept, count, png)
    print(text + f'wrote {out_dir}/verdict.md, the epochs.csv files and {png}')


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    one = commands.add_parser('measure')
    one.add_argument('runs', nargs='+', metavar='RUN_DIR')
    one.add_argument('--out', required=True)
    two = commands.add_parser('report')
    two.add_argument('--main', required=True)
    two.add_argument('--control', required=True)
    two.add_argument('--out', required=True)
    two.add_argument('--png', required=True)
    args = parser.parse_args(config.parse_overrides(argv))
    os.makedirs(args.out, exist_ok=True)
    if args.command == 'measure':
        defaults = config.as_dict()
        for run_dir in args.runs:
            config.set_values(defaults)
            measure(run_dir, args.out)
    else:
        report(args.main, args.control, args.out, args.png)
    return 0


if __name__ == '__main__':
    cli.run(main)
