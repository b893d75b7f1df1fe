"""Train the completion network and the global + local discriminators.

Phase 1 (PRETRAIN_EPOCH epochs): completion network with the masked mse; saves backup/pretrained.
Phase 2 (D_EPOCH epochs): discriminators only.
Phase 3: both, until the epoch-mean d_loss < STOP_LOSS or MAX_EPOCH epochs in all.

    python train.py                  # starts, or resumes from backup/ exactly where it stopped
    python train.py --fresh          # start over; the old backup/ files are moved aside
    python train.py --BATCH_SIZE=8   # any key of config.py
"""
import argparse
import csv
import os
import signal
import time

import cli
import config
import cv2
import numpy as np
import tensorflow as tf
from tqdm import tqdm

import backup
import data
import network
import plots

tf1 = tf.compat.v1
DONE = 4  # phase value of a run that met its stop rule
LOSS_FIELDS = ['epoch', 'phase', 'step', 'seconds', 'mse', 'd_loss', 'g_adv']


class Interrupt:
    """SIGINT/SIGTERM set a flag the loop reads between steps, so no step or save is cut short."""

    def __init__(self):
        self.signal = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        if self.signal is None:
            print('\nstopping: finishing this step, then saving...', flush=True)
        self.signal = signum

    def exit_status(self):
        return 130 if self.signal == signal.SIGINT else 0


class LossLog:
    """output/loss.csv and loss.png once an epoch; TensorBoard scalars every LOG_EVERY steps
    and each epoch's sample grid."""

    def __init__(self, epoch):
        self.csv = os.path.join(config.OUTPUT_DIR, 'loss.csv')
        self.png = os.path.join(config.OUTPUT_DIR, 'loss.png')
        # Rows past the restored epoch belong to work that was not saved.
        self.rows = [r for r in plots.read_rows(self.csv) if int(r['epoch']) <= epoch]
        self._write()
        self.writer = tf1.summary.FileWriter(os.path.join(config.OUTPUT_DIR, 'logs'))

    def scalars(self, step, values):
        summary = tf1.Summary(value=[tf1.Summary.Value(tag=k, simple_value=float(v))
                                     for k, v in values.items()])
        self.writer.add_summary(summary, step)

    def image(self, step, tag, path):
        """Show a PNG file in TensorBoard's Images tab: the same bytes, so the same picture."""
        with open(path, 'rb') as f:
            png = f.read()
        height, width, channels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).shape
        image = tf1.Summary.Image(height=height, width=width, colorspace=channels,  # 3 RGB, 4 RGBA
                                  encoded_image_string=png)
        self.writer.add_summary(tf1.Summary(value=[tf1.Summary.Value(tag=tag, image=image)]), step)
        self.writer.flush()

    def epoch(self, row):
        self.rows.append({k: row.get(k, '') for k in LOSS_FIELDS})
        self._write()
        plots.plot_losses(self.csv, self.png)
        self.writer.flush()

    def _write(self):
        tmp = f'{self.csv}.tmp'
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, LOSS_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.csv)


class Diverged(cli.UserError):
    pass


def diverged(what):
    """The error for a NaN/Inf: nothing of it was saved, so the newest save is still good."""
    last = tf1.train.latest_checkpoint(config.BACKUP_DIR)
    kept = f'{last} stays the last good save' if last else 'nothing was saved'
    return Diverged(f'{what}; stopped without saving, so {kept}: lower LEARNING_RATE '
                    f'(now {config.LEARNING_RATE:g}) and rerun')


def recalibration_feeds(model, images):
    """Fixed training batches with holes for re-estimating batch-norm statistics."""
    rng = np.random.RandomState([config.SEED, 1])
    for _ in range(config.BN_RECALIBRATE_BATCHES):
        index = rng.choice(len(images), config.BATCH_SIZE, replace=False)
        masks, _ = data.sample_holes(rng, config.BATCH_SIZE)
        yield model.feed(data.batch(images, index), masks)


def run_epoch(sess, model, images, phase, epoch, first_step, interrupt, log, save):
    """Train one epoch (from batch `first_step` on); returns the mean of each loss."""
    size = config.BATCH_SIZE
    steps = len(images) // size
    order = np.random.RandomState([config.SEED, epoch]).permutation(len(images))
    totals, window, last_save = {}, {}, time.time()
    bar = tqdm(range(first_step, steps), initial=first_step, total=steps, unit='step',
               desc=f'phase {phase} epoch {epoch + 1}', dynamic_ncols=True)
    tick = time.time()
    for i in bar:
        rng = np.random.RandomState([config.SEED, epoch, i])  # same batch after a resume
        batch = data.batch(images, order[i * size:(i + 1) * size], rng if config.FLIP else None)
        masks, corners = data.sample_holes(rng, size)
        _, losses = sess.run([model.train_ops[phase], model.losses[phase]],
                             model.feed(batch, masks, corners))
        for name, value in losses.items():
            if not np.isfinite(value):
                raise diverged(f'{name} became {value} at epoch {epoch + 1} batch {i + 1} (phase {phase})')
            totals[name] = totals.get(name, 0.0) + float(value)
            window[name] = window.get(name, 0.0) + float(value)
        if (i + 1) % config.LOG_EVERY == 0 or i + 1 == steps:
            count = (i - first_step) % config.LOG_EVERY + 1
            means = {k: v / count for k, v in window.items()}
            speed = count * size / (time.time() - tick)
            bar.set_postfix({**{k: f'{v:.3g}' for k, v in means.items()}, 'img/s': f'{speed:.1f}'})
            log.scalars(model.state(sess)[3], {**means, 'images_per_second': speed})
            window, tick = {}, time.time()
        if interrupt.signal:
            break
        if i + 1 < steps and time.time() - last_save > config.SAVE_MINUTES * 60:  # the epoch end saves anyway
            save()
            last_save = time.time()
    bar.close()
    done = max(1, bar.n - first_step)
    return {k: v / done for k, v in totals.items()}


def train(sess, model, saver, finite, train_images, test_images, interrupt):
    """The three phases; returns the exit status. `finite`: op, True if no variable holds NaN/Inf."""
    phase, epoch, _, _ = model.state(sess)
    log = LossLog(epoch)
    count = min(config.SAMPLE_COUNT, len(test_images))
    samples = np.asarray(test_images[:count])
    sample_masks, _ = data.sample_holes(np.random.RandomState(config.SEED), count)

    def save(name=backup.LATEST):
        if config.BN_RECALIBRATE_BATCHES:
            model.recalibrate(sess, recalibration_feeds(model, train_images))
        now_phase, now_epoch, _, step = model.state(sess)
        if not sess.run(finite):  # a step can blow up the weights before any loss shows it
            raise diverged(f'the weights became NaN or Inf by step {step} (phase {now_phase}, '
                           f'epoch {now_epoch + 1})')
        step = step if name == backup.LATEST else None
        return backup.save(sess, saver, name, step)

    def set_phase(value):
        sess.run(model.set_phase, {model.phase_value: value})

    while True:
        phase, epoch, epoch_step, step = model.state(sess)
        if phase == 1 and epoch >= config.PRETRAIN_EPOCH:
            print(f'phase 1 done after {epoch} epochs: saved {save(backup.PRETRAINED)}')
            set_phase(2)
            continue
        if phase == 2 and epoch >= config.PRETRAIN_EPOCH + config.D_EPOCH:
            set_phase(3)
            continue
        if phase == DONE:
            print(f'this run already met its stop rule (epoch {epoch}); use --fresh to start a new one')
            return 0
        if epoch >= config.MAX_EPOCH:
            print(f'stopped: reached MAX_EPOCH={config.MAX_EPOCH}; saved {save()}')
            return 0
        start = time.time()
        means = run_epoch(sess, model, train_images, phase, epoch, epoch_step, interrupt, log, save)
        if interrupt.signal:
            print(f'saved {save()}; run python train.py to resume')
            return interrupt.exit_status()
        sess.run(model.next_epoch)
        finished = phase == 3 and means.get('d_loss', np.inf) < config.STOP_LOSS
        if finished:
            set_phase(DONE)
        # The row goes first: a crash before the save drops it on resume (LossLog keeps rows
        # up to the restored epoch), a crash after the save can no longer lose it.
        log.epoch({'epoch': epoch + 1, 'phase': phase, 'step': model.state(sess)[3],
                   'seconds': round(time.time() - start, 1), **means})
        path = save()
        completed = np.asarray(model.complete(sess, samples, sample_masks))
        grid = os.path.join(config.OUTPUT_DIR, f'epoch_{epoch + 1:04d}.png')
        plots.save_grid(grid, [plots.show_holes(samples, sample_masks), completed, samples],
                        ['input', f'completion (epoch {epoch + 1})', 'ground truth'])
        log.image(model.state(sess)[3], 'samples', grid)
        print(f'epoch {epoch + 1} phase {phase}: ' + ' '.join(f'{k} {v:.5g}' for k, v in means.items())
              + f' ({time.time() - start:.0f} s) saved {path}')
        if finished:
            print(f'stopped: d_loss {means["d_loss"]:.3g} < STOP_LOSS={config.STOP_LOSS}')
            return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=config.help_text(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--fresh', action='store_true', help='start over (old files are moved aside)')
    parser.add_argument('--resume', metavar='CHECKPOINT', help='resume from this checkpoint prefix')
    args = parser.parse_args(config.parse_overrides(argv))
    if args.fresh and args.resume:
        raise cli.UserError('--fresh and --resume exclude each other')
    train_images = data.load_images(data.npy_path('train'))
    test_images = data.load_images(data.npy_path('test'))
    if len(train_images) < config.BATCH_SIZE:
        raise cli.UserError(f'{data.npy_path("train")} holds {len(train_images)} images, fewer than '
                            f'BATCH_SIZE={config.BATCH_SIZE}; lower BATCH_SIZE or prepare more images')
    os.makedirs(config.OUTPUT_DIR, exist_ok=True)
    lock = backup.lock()  # noqa: F841  held until the process ends
    partial = backup.remove_partial()
    if partial:
        print(f'removed {len(partial)} half-written file(s) of a save that a crash cut short')
    if args.fresh:
        moved = backup.move_aside()
        if moved:
            print(f'moved the previous run to {moved}/')
    checkpoint = args.resume or backup.find()
    saved = backup.read_run_config()
    if checkpoint and saved:
        backup.check_compatible(saved)
        changed = backup.changed_settings(saved)
        if changed:  # allowed (e.g. a smaller batch after running out of memory), but say so
            print(f'note: resuming with other settings than the saved run: {", ".join(changed)}')

    interrupt = Interrupt()
    tf1.set_random_seed(config.SEED)
    model = network.Model()
    saver = tf1.train.Saver(max_to_keep=config.KEEP_CHECKPOINTS + 1, save_relative_paths=True)
    backup.adopt(saver)
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in tf1.global_variables()
                            if v.dtype.base_dtype.is_floating])
    sess = network.make_session()
    print(f'device: {network.device_name()}')
    if checkpoint:
        backup.restore(sess, saver, checkpoint)
        phase, epoch, epoch_step, step = model.state(sess)
        print(f'resumed {checkpoint}: phase {phase}, epoch {epoch + 1}, batch {epoch_step}, step {step}')
    else:
        sess.run(tf1.global_variables_initializer())
        sess.run(model.set_mean_pixel, {model.mean_pixel_value: data.mean_pixel(train_images)})
    backup.write_run_config()
    sess.graph.finalize()  # the loop must not grow the graph
    print(f'{len(train_images)} training images, {len(train_images) // config.BATCH_SIZE} steps of '
          f'{config.BATCH_SIZE} per epoch; phases: 1 until epoch {config.PRETRAIN_EPOCH}, 2 until '
          f'{config.PRETRAIN_EPOCH + config.D_EPOCH}, 3 until d_loss < {config.STOP_LOSS} '
          f'or epoch {config.MAX_EPOCH}')
    try:
        return train(sess, model, saver, finite, train_images, test_images, interrupt)
    except tf.errors.ResourceExhaustedError:
        raise cli.UserError(f'out of memory at BATCH_SIZE={config.BATCH_SIZE}: run python train.py '
                            f'--BATCH_SIZE={max(1, config.BATCH_SIZE // 2)} (or lower it in config.py); '
                            f'training resumes from the last save')


if __name__ == '__main__':
    cli.run(main)
