"""Pictures for people: labelled image grids and the loss curves."""
import csv
import os

import matplotlib

matplotlib.use('Agg')  # files only; works without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from glcic import atomic  # noqa: E402
from glcic.errors import UserError  # noqa: E402

PHASE_NAMES = {1: 'phase 1: completion (mse)', 2: 'phase 2: discriminator', 3: 'phase 3: joint'}


def save_grid(path, columns, titles, row_labels=None):
    """Write rows of images side by side with a title over each column.

    Args: columns, a list of uint8 arrays [rows,H,W,3] (same rows); titles, one per column.
    """
    rows = len(columns[0])
    fig, axes = plt.subplots(rows, len(columns), squeeze=False,
                             figsize=(1.6 * len(columns), 1.6 * rows + 0.3))
    for c, (images, title) in enumerate(zip(columns, titles)):
        for r in range(rows):
            ax = axes[r][c]
            ax.imshow(images[r], interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=7)
    fig.tight_layout(pad=0.3)
    save_figure(fig, path, dpi=100)


def save_figure(fig, path, dpi):
    """Write the figure as a PNG atomically and free it."""
    try:
        with atomic.replace(path, 'wb') as f:
            fig.savefig(f, dpi=dpi, format='png')
    finally:
        plt.close(fig)


def show_holes(images, masks):
    """The input as the user sees it: holes painted white."""
    out = np.array(images, copy=True)
    out[masks[..., 0] > 0.5] = 255
    return out


def read_rows(csv_path):
    """The rows of a loss.csv as dicts of strings; [] if there is none. A row that is not
    numbers under the header (integer epoch, phase and step) is a UserError naming its line."""
    if not os.path.exists(csv_path):
        return []
    rows = []
    try:
        with open(csv_path, newline='') as f:
            reader = csv.DictReader(f)
            for row in reader:
                if not _numbers(row):
                    raise UserError(f'{csv_path} line {reader.line_num} is not a row of losses under its '
                                    f'header; correct or delete that line')
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f'{csv_path} is unreadable ({error}); move it away to start a new one')
    return rows


def _numbers(row):
    """True if a csv row has a value for every header field and none more (DictReader puts the
    extra under None, None for a missing one), integers for epoch, phase and step, numbers or blanks else."""
    if None in row or None in row.values() or not {'epoch', 'phase'} <= row.keys():
        return False
    return (all(_parses(int, row[k]) for k in ('epoch', 'phase', 'step') if k in row)
            and all(_parses(float, v) for v in row.values() if v))


def _parses(kind, text):
    try:
        kind(text)
    except ValueError:
        return False
    return True


def plot_losses(csv_path, png_path):
    """Plot every loss column of loss.csv against epoch, one panel each, phases shaded."""
    rows = read_rows(csv_path)
    if not rows:
        return
    keys = [k for k in rows[0] if k not in ('epoch', 'phase', 'step', 'seconds')]
    epochs = np.array([int(r['epoch']) for r in rows])
    phases = np.array([int(r['phase']) for r in rows])
    fig, axes = plt.subplots(len(keys), 1, sharex=True, squeeze=False, figsize=(7, 2.2 * len(keys)))
    for ax, key in zip(axes[:, 0], keys):
        values = np.array([float(r[key]) if r[key] else np.nan for r in rows])
        ax.plot(epochs, values, marker='.')
        ax.set_ylabel(key)
        if np.nanmin(values, initial=np.inf) > 0:
            ax.set_yscale('log')
        for phase, color in ((1, '#dde8f7'), (2, '#f7eadd'), (3, '#e2f2dd')):
            inside = epochs[phases == phase]
            if len(inside):
                ax.axvspan(inside.min() - 0.5, inside.max() + 0.5, color=color, zorder=0,
                           label=PHASE_NAMES[phase])
    axes[0, 0].legend(fontsize=7, loc='upper right')
    axes[-1, 0].set_xlabel('epoch')
    fig.tight_layout()
    save_figure(fig, png_path, dpi=90)
