"""Where the d_loss stop rules (before 2026-12-07) end a long run, against the held-out quality of each epoch.

    python experiments/stop_rule.py c-stop c-stop-2 --root /work/runs/celeba64 \
        --results /work/runs/results --png experiments/stop64-celeba.png \
        --out experiments/results/stop64

The rules tried are the two that ended phase 3 on d_loss before it ended on the validation faces'
realism (glcic/stopping.py): one epoch below OLD_STOP_LOSS, and two SETTLED_EPOCHS-epoch windows
within SETTLED_LOSS of each other; the data behind QUALITY.md's "When phase 3 stops".
RUN ...: one run and the runs that went on from it (quality.py run --from), in order. For each
it reads RUN/output/loss.csv (a row per epoch: phase, d_loss, ...) and RESULTS/RUN.json (what
`quality.py eval` measured at each checkpoint: hole PSNR, sharpness, identity). It writes, into
--out, the rows of every run's loss.csv (one file, the data behind every d_loss figure) and a
table per epoch with the epoch where each rule ends phase 3; and it draws d_loss, hole PSNR,
sharpness and identity against the epoch with a line where each rule fires.
"""
import argparse
import csv
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import config  # noqa: E402
from glcic import atomic, errors  # noqa: E402
from glcic import plots  # noqa: E402  (sets matplotlib's file-only backend)
from glcic.plots import plt  # noqa: E402

OLD_STOP_LOSS = 0.85  # the first rule: the first phase-3 epoch whose mean d_loss is below this
SETTLED_LOSS, SETTLED_EPOCHS = 0.02, 5  # the second: two windows' mean d_loss this close
METRICS = (('hole_psnr', 'hole PSNR (dB)'), ('sharpness', 'sharpness (1 = as detailed as the truth)'),
           ('identity', 'identity distance (lower is better)'))


def epochs(root, names):
    """One dict per epoch of the runs, in order: the loss.csv row and, if quality.py measured
    the checkpoint saved at that epoch's end, its moving-average metrics."""
    rows = []
    for name in names:
        loss_csv = os.path.join(root, name, 'output', 'loss.csv')
        found = plots.read_rows(loss_csv)
        if not found:
            raise errors.UserError(f'{loss_csv} holds no rows: is {name} a run of quality.py run?')
        rows += [{k: float(v) if v else None for k, v in row.items()} for row in found]
    return rows


def measured(results, names):
    """{epoch: metrics} of the checkpoints quality.py eval measured at an epoch's end."""
    by_epoch = {}
    for name in names:
        path = os.path.join(results, f'{name}.json')
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for point in json.load(f)['checkpoints']:
                by_epoch[point['epoch']] = point['moving_averages']  # an epoch's last checkpoint wins
    return by_epoch


def old_rule(d_losses):
    return d_losses[-1] < OLD_STOP_LOSS


def first_firing(rows, rule):
    """The epoch after which `rule` ends phase 3, or None: it sees each phase-3 epoch's d_loss so far."""
    history = []
    for row in rows:
        if row['phase'] >= 3:
            history.append(row['d_loss'])
            if rule(history):
                return int(row['epoch'])
    return None


def write_table(rows, metrics, fired, path):
    lines = ['| epoch | phase | d_loss | ' + ' | '.join(label for _, label in METRICS) + ' |',
             '|---:|---:|---:|' + '---:|' * len(METRICS)]
    for row in rows:
        epoch = int(row['epoch'])
        values = metrics.get(epoch, {})
        marks = ''.join(f' ({name})' for name, at in fired.items() if at == epoch)
        cells = [f'{values[key]:.3f}' if key in values else '' for key, _ in METRICS]
        d_loss = f'{row["d_loss"]:.3f}' if row.get('d_loss') is not None else ''
        lines.append(f'| {epoch}{marks} | {int(row["phase"])} | {d_loss} | ' + ' | '.join(cells) + ' |')
    summary = [f'- {name}: ' + (f'phase 3 ends after epoch {at}' if at else 'does not fire in these epochs')
               for name, at in fired.items()]
    atomic.write_text(path, '\n'.join(summary + [''] + lines) + '\n')


def write_losses(rows, path):
    fields = list(rows[0])
    with atomic.replace(path, newline='') as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows({k: ('' if v is None else f'{v:g}') for k, v in row.items()} for row in rows)


def draw(rows, metrics, fired, png):
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = [('d_loss', 'd_loss (nats; 1.39 = chance)')] + list(METRICS)
    for ax, (key, label) in zip(axes.flat, panels):
        if key == 'd_loss':
            points = [(r['epoch'], r['d_loss']) for r in rows if r.get('d_loss') is not None]
            ax.axhline(OLD_STOP_LOSS, color='0.5', ls=':', lw=1)
        else:
            points = sorted((epoch, values[key]) for epoch, values in metrics.items() if key in values)
        if points:
            ax.plot(*zip(*points), marker='o', ms=3)
        for i, (name, at) in enumerate(fired.items()):
            if at:
                ax.axvline(at, color=f'C{i + 1}', ls='--', label=name)
        phase3 = [r['epoch'] for r in rows if r['phase'] >= 3]
        if phase3:
            ax.axvspan(min(phase3) - 1, max(phase3), color='0.9', zorder=0)
        ax.set_xlabel('epoch (phase 3 shaded)')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def settled_rule(d_losses):
    """True once the mean d_loss of the last SETTLED_EPOCHS epochs is within SETTLED_LOSS of the
    SETTLED_EPOCHS before."""
    n = SETTLED_EPOCHS
    return len(d_losses) >= 2 * n and abs(sum(d_losses[-n:]) - sum(d_losses[-2 * n:-n])) / n < SETTLED_LOSS


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('names', nargs='+', metavar='RUN')
    parser.add_argument('--root', required=True, help='the runs folder of quality.py (--root)')
    parser.add_argument('--results', required=True, help="quality.py's results folder (RUN.json)")
    parser.add_argument('--png', required=True)
    parser.add_argument('--out', required=True, help='folder for loss.csv and stop_rule.md')
    args = parser.parse_args(config.parse_overrides(argv))
    rows = epochs(args.root, args.names)
    metrics = measured(args.results, args.names)
    fired = {f'old: an epoch below {OLD_STOP_LOSS}': first_firing(rows, old_rule),
             f'settled: STOP_LOSS={SETTLED_LOSS}, STOP_EPOCHS={SETTLED_EPOCHS}': first_firing(rows, settled_rule)}
    os.makedirs(args.out, exist_ok=True)
    write_losses(rows, os.path.join(args.out, 'loss.csv'))
    write_table(rows, metrics, fired, os.path.join(args.out, 'stop_rule.md'))
    draw(rows, metrics, fired, args.png)
    print(f'wrote {args.png}, {args.out}/loss.csv and {args.out}/stop_rule.md')
    return 0


if __name__ == '__main__':
    from glcic import cli
    cli.run(main)
