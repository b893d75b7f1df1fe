"""Train the completion network and the global + local discriminators: the paper's Algorithm 1.

Phase 1 (PRETRAIN_EPOCH epochs): completion network with the masked mse; saves backup/pretrained.
Phase 2 (D_EPOCH epochs): discriminators only.
Phase 3: both, until the validation faces' realism stops improving (glcic/stopping.py: STOP_LOSS,
STOP_EPOCHS; the most realistic epoch saved as backup/best) or MAX_EPOCH epochs in all.

    python train.py                  # starts, or resumes from backup/ exactly where it stopped
    python train.py --fresh          # start over; the old backup/ files are moved aside
    python train.py --continue --MAX_EPOCH=60   # go on in phase 3 after the stop rule ended it
    python train.py --BATCH_SIZE=8   # any key of config.py

What is not training (files, locks, resumes, workers, signals) is one call each into
glcic/housekeeping.py.
"""
import dataclasses
import math
import time

from glcic import cli  # first: it sets TF_ENABLE_ONEDNN_OPTS, which TensorFlow reads on import
import config
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from glcic import backup, data, graphs, housekeeping, replicas, stopping

tf1 = tf.compat.v1


@dataclasses.dataclass
class Run:
    """What every epoch of one training run works with."""
    sess: tf1.Session
    model: graphs.Training
    images: np.ndarray  # the training split, uint8 [N,S,S,3] (memory-mapped)
    interrupt: housekeeping.Interrupt
    log: housekeeping.LossLog  # None on a worker that does not write the files
    save: callable  # save(name=backup.LATEST, recalibrated=False) returns the save's path (housekeeping.Saves)
    parallel: replicas.Replicas = dataclasses.field(default_factory=replicas.Replicas)
    validation: stopping.Validation = None  # the stop rule's faces; None: phase 3 runs to MAX_EPOCH


def train_step(sess, model, phase, feeds):
    """One update from the micro-batches `feeds` (ACCUM_STEPS of them); returns its losses,
    each the mean over the micro-batches."""
    if len(feeds) == 1:
        _, losses = sess.run([model.train_ops[phase], model.losses[phase]], feeds[0])
        return losses
    losses = {}
    for accumulate, fetch, apply in model.stages[phase]:
        values = [sess.run([accumulate, fetch], feed)[1] for feed in feeds]
        sess.run(apply)
        losses.update({name: float(np.mean([v[name] for v in values])) for name in fetch})
    sess.run(model.count_step, {model.step_losses: [losses.get(n, 0.0) for n in graphs.LOSS_NAMES]})
    return losses


def run_epoch(run, phase, epoch, first_step):
    """Train one epoch of `phase` (from batch `first_step` on); returns the mean of each loss
    over every step of the epoch, those before a resume included."""
    sess, model, images = run.sess, run.model, run.images
    size = config.BATCH_SIZE * config.ACCUM_STEPS  # images per update
    steps = len(images) // size
    order = data.stream('shuffle', epoch).permutation(len(images))
    window, in_window, last_save = {}, 0, time.time()
    bar = tqdm(range(first_step, steps), initial=first_step, total=steps, unit='step',
               desc=f'phase {phase} epoch {epoch + 1}', dynamic_ncols=True)
    tick = time.time()
    for i in bar:
        rng = data.stream('step', epoch, i)  # same batch after a resume
        batch = data.batch(images, order[i * size:(i + 1) * size], rng if config.FLIP else None)
        masks, corners = data.sample_holes(rng, size)
        real_corners = data.sample_holes(rng, size)[1] if config.REAL_OWN_HOLES else None
        micro = [slice(j, j + config.BATCH_SIZE) for j in range(0, size, config.BATCH_SIZE)]
        losses = train_step(sess, model, phase, [
            model.feed(batch[m], masks[m], corners[m], None if real_corners is None else real_corners[m])
            for m in micro])
        for name, value in losses.items():
            if not np.isfinite(value):
                raise housekeeping.diverged(f'{name} became {value} at epoch {epoch + 1} batch {i + 1} '
                                            f'(phase {phase})')
            window[name] = window.get(name, 0.0) + float(value)
        in_window += 1  # a resumed epoch's first window is shorter than LOG_EVERY
        if (i + 1) % config.LOG_EVERY == 0 or i + 1 == steps:
            means = {k: v / in_window for k, v in window.items()}
            speed = in_window * size / (time.time() - tick)
            bar.set_postfix({**{k: f'{v:.3g}' for k, v in means.items()}, 'img/s': f'{speed:.1f}'})
            if run.log:
                run.log.scalars(model.state(sess)[3], {**means, 'images_per_second': speed})
            window, in_window, tick = {}, 0, time.time()
        due = i + 1 < steps and time.time() - last_save > config.SAVE_MINUTES * 60  # the epoch end saves anyway
        stop, saved = housekeeping.between_steps(run, i, due)  # Ctrl-C, SIGTERM, every worker alike
        if stop:
            break
        if saved:
            last_save = time.time()
    bar.close()
    return model.epoch_means(sess, phase)


def validate(run):
    """The validation faces' (realism, hole PSNR) with freshly recalibrated batch norm."""
    housekeeping.recalibrate(run.sess, run.model, run.images)
    return run.validation.scores(lambda images, masks: np.asarray(run.model.complete(run.sess, images, masks)))


def stop_rule(model, sess):
    """(why phase 3 ends now, or None; whether this epoch is the most realistic yet), by
    glcic/stopping.py over the validation scores kept in the graph."""
    realism_history, psnr_history, (_, baseline_psnr) = model.val_history(sess)
    best = stopping.best_epoch(realism_history, psnr_history, baseline_psnr) == len(realism_history) - 1
    if config.STOP_LOSS == 0:
        return None, best
    return stopping.stop_rule(realism_history, psnr_history, baseline_psnr, config.STOP_EPOCHS,
                              config.STOP_LOSS), best


def train_epoch(run, phase, epoch):
    """run_epoch, then the epoch's validation (phase 3), stop rule, loss row, save and sample
    grid; returns the exit status if training ends here, else None."""
    sess, model = run.sess, run.model
    start = time.time()
    means = run_epoch(run, phase, epoch, model.state(sess)[2])
    if run.interrupt.signal:
        print(f'saved {run.save()}; run python train.py to resume')
        return run.interrupt.exit_status()
    scored = phase == 3 and run.validation is not None
    if scored:
        started = time.time()
        means['val_realism'], means['val_hole_psnr'] = validate(run)
        sess.run(model.record_val, {model.val_value: [means['val_realism'], means['val_hole_psnr']]})
        validation_seconds = time.time() - started
    sess.run(model.next_epoch)
    stop, best = stop_rule(model, sess) if scored else (None, False)
    if stop:
        sess.run(model.set_phase, {model.phase_value: graphs.STOPPED})
    # The row waits in BACKUP_DIR and reaches loss.csv only after the save: a crash or a full
    # disk before the save drops it, one after keeps it (LossLog adds it on resume).
    if run.log:
        run.log.stage({'epoch': epoch + 1, 'phase': phase, 'step': model.state(sess)[3],
                       'seconds': round(time.time() - start, 1), **means})
    path = run.save(recalibrated=scored)
    if best and run.parallel.chief:
        backup.alias(path, backup.BEST)
    if run.log:
        run.log.epoch()
        run.log.grid(epoch, model.state(sess)[3], lambda images, masks: model.complete(sess, images, masks))
    print(f'epoch {epoch + 1} phase {phase}: ' + ' '.join(f'{k} {v:.5g}' for k, v in means.items())
          + f' ({time.time() - start:.0f} s' + (f', validation {validation_seconds:.0f} s' if scored else '')
          + f') saved {path}' + (f', the most realistic yet: also {backup.BEST}' if best else ''))
    if stop:
        print(f'stopped: {stop}; the most realistic epoch is {config.BACKUP_DIR}/{backup.BEST}: '
              f'python test.py --model {backup.BEST}')
        return 0
    return None


def train_phase(run, phase, until):
    """Epochs of `phase` until the run has trained `until` epochs in all: None then, or the exit
    status of a run that ends first (MAX_EPOCH, Ctrl-C, the stop rule)."""
    while True:
        epoch = run.model.state(run.sess)[1]
        if epoch >= until:
            return None
        if epoch >= config.MAX_EPOCH:
            print(f'stopped: reached MAX_EPOCH={config.MAX_EPOCH}; saved {run.save()}')
            return 0
        status = train_epoch(run, phase, epoch)
        if status is not None:
            return status


def train(run):
    """Algorithm 1, from wherever the restored state (phase, epoch, step) stands; returns the
    exit status. Each phase's step is one session.run of model.train_ops[phase] (train_step)."""
    sess, model = run.sess, run.model
    phase, epoch, _, _ = model.state(sess)
    if phase == graphs.STOPPED:
        print(f'this run already met its stop rule (epoch {epoch}): python train.py --continue '
              f'--MAX_EPOCH={epoch + 10} --STOP_LOSS=0 goes on in phase 3 from its final save (without '
              f'--STOP_LOSS=0 the rule may end it again), --fresh starts a new run')
        return 0

    # Training Phase 1: the completion network C alone, with the masked MSE (Tc epochs).
    if phase == 1:
        status = train_phase(run, 1, until=config.PRETRAIN_EPOCH)
        if status is not None:
            return status
        print(f'phase 1 done after {model.state(sess)[1]} epochs: saved {run.save(backup.PRETRAINED)}')
        sess.run(model.set_phase, {model.phase_value: 2})
        phase = 2

    # Training Phase 2: the discriminators D alone, real images against C's completions (Td epochs).
    if phase == 2:
        status = train_phase(run, 2, until=config.PRETRAIN_EPOCH + config.D_EPOCH)
        if status is not None:
            return status
        if run.validation:  # phase 1's network: what phase 3 has to improve on
            sess.run(model.set_val_baseline, {model.val_value: validate(run)})
        sess.run(model.set_phase, {model.phase_value: 3})

    # Training Phase 3: C and D together, C on the MSE + ALPHA * the GAN loss, until the stop rule.
    return train_phase(run, 3, until=math.inf)


def main(argv):
    args = housekeeping.arguments(argv, __doc__)
    parallel = replicas.Replicas()
    train_images, test_images, validation = housekeeping.load_splits(parallel)
    lock = housekeeping.take_over(args, parallel)  # noqa: F841  held until the process ends
    interrupt = housekeeping.Interrupt()
    tf1.set_random_seed(config.SEED)
    with parallel.scope():
        model = graphs.Training()
        parallel.build_agreement()
    save = housekeeping.Saves(model, train_images, parallel)
    sess = save.sess = parallel.session()
    housekeeping.describe_device(parallel)

    def start_and_train():
        housekeeping.start(sess, model, save, args, parallel, interrupt, train_images)
        sess.graph.finalize()  # the loop must not grow the graph
        housekeeping.describe_plan(len(train_images), validation)
        log = housekeeping.LossLog(model.state(sess)[1], test_images) if parallel.chief else None
        status = train(Run(sess, model, train_images, interrupt, log, save, parallel, validation))
        if parallel.workers > 1:
            print(f'weights digest {replicas.digest(sess, model.g_vars + model.d_vars)} (the same on every worker)')
        return status
    return housekeeping.guard(parallel, interrupt, start_and_train)


if __name__ == '__main__':
    cli.run(main)
