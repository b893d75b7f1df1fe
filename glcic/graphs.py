"""The graphs the scripts run, built from network.py's networks and losses.

Inference() is the completion network as test.py, export.py and the page use it: feed `images`
(uint8) and `masks`, fetch `output` or call complete(). Training() is train.py's: the same plus
the discriminators, the losses and one train op per phase (one session.run per step). A Saver
over `variables` restores either from any checkpoint train.py wrote.
"""
import numpy as np
import tensorflow as tf

import config
import layer
import network
from glcic import replicas

tf1 = tf.compat.v1
LOSS_NAMES = ('mse', 'd_loss', 'g_adv')  # the losses train.py logs, in the order of state/loss_sums
# Newer than some checkpoints: a resume that lacks them starts them from their initial values.
ADDED_STATE = ('state/loss_sums', 'state/g_loss_scale', 'state/g_good_steps', 'state/d_loss_scale',
               'state/d_good_steps', 'state/val_scores', 'state/val_count', 'state/val_baseline')
DONE = 4  # state/phase of a run whose stop rule ended phase 3 (train.py --continue goes on)
VAL_HISTORY = 64  # the latest phase-3 epochs whose validation scores the stop rule sees (glcic/stopping.py)
DTYPES = {'float32': tf.float32, 'float16': tf.float16, 'bfloat16': tf.bfloat16}  # config.PRECISION
# float16's dynamic loss scale: its start, and the finite steps after which it doubles.
LOSS_SCALE_START, LOSS_SCALE_GROWTH_STEPS = 2.0 ** 15, 2000


def to_float(images):
    """data.to_float inside the graph: uint8 [0, 255] -> float32 [-1, 1]."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_uint8(images):
    """data.to_uint8 inside the graph (round half to even, like np.rint): [-1, 1] -> uint8."""
    return tf.cast(tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0), tf.uint8)


def _counter(name, dtype):
    return tf1.get_variable(name, [], dtype, trainable=False, initializer=tf1.zeros_initializer())


class Inference:
    """The completion network with the moving-average batch norm, at any size divisible by 4,
    and the state every checkpoint holds (mean pixel, step, epoch, phase)."""

    def __init__(self, batch_stats=False, bfloat16=False):
        """batch_stats: also build `output_batch_stats` (each batch normalised with its own
        statistics). bfloat16: complete in bfloat16 (faster on CPUs with bfloat16 instructions,
        BENCHMARKS.md); the variables stay float32."""
        self.images = tf1.placeholder(tf.uint8, [None, None, None, 3], 'images')
        self.masks = tf1.placeholder(tf.float32, [None, None, None, 1], 'masks')
        with tf1.variable_scope('state'):
            self.mean_pixel = tf1.get_variable('mean_pixel', [3], trainable=False,
                                               initializer=tf1.zeros_initializer())
            self.step = _counter('step', tf.int64)
            self.epoch = _counter('epoch', tf.int64)
            self.epoch_step = _counter('epoch_step', tf.int64)
            self.phase = tf1.get_variable('phase', [], tf.int32, trainable=False,
                                          initializer=tf1.constant_initializer(1))
        self.x = to_float(self.images)
        dtype = tf.bfloat16 if bfloat16 else tf.float32
        net_input = tf.cast(network.generator_input(self.x, self.masks, self.mean_pixel), dtype)
        raw = tf.cast(network.generator(net_input, training=False), tf.float32)
        self.completion = network.keep_known(raw, self.x, self.masks)
        self.output = to_uint8(self.completion)
        self.output_batch_stats = None
        if batch_stats:
            raw = network.generator(network.generator_input(self.x, self.masks, self.mean_pixel), training=True)
            self.output_batch_stats = to_uint8(network.keep_known(raw, self.x, self.masks))
        self.variables = tf1.global_variables()

    def feed(self, images, masks):
        return {self.images: images, self.masks: masks}

    def state(self, sess):
        """(phase, epoch, epoch_step, step) as Python ints."""
        return tuple(int(v) for v in sess.run([self.phase, self.epoch, self.epoch_step, self.step]))

    def complete(self, sess, images, masks, batch_stats=False):
        """Fill the holes of uint8 images [N,H,W,3] with masks [N,H,W,1]; returns uint8.

        batch_stats: normalise with each batch's statistics instead of the moving averages.
        """
        fetch = self.output_batch_stats if batch_stats else self.output
        if fetch is None:
            raise ValueError('batch_stats=True needs Training() or Inference(batch_stats=True)')
        out = np.empty(images.shape, np.uint8)
        for i in range(0, len(images), config.BATCH_SIZE):
            part = slice(i, i + config.BATCH_SIZE)
            out[part] = sess.run(fetch, self.feed(images[part], masks[part]))
        return out


class LossScale:
    """Dynamic loss scaling of one network's updates in float16 (a pass-through otherwise).

    float16 gradients of small losses underflow to zero. scale() multiplies the loss before
    the gradients; apply() divides them again, then updates only if every gradient is
    finite: a step with an inf or NaN is skipped and halves the scale, and each
    LOSS_SCALE_GROWTH_STEPS finite steps in a row double it. The variables exist in every
    precision, so every checkpoint holds the same names.
    """

    def __init__(self, name):
        with tf1.variable_scope('state'):
            self.value = tf1.get_variable(f'{name}_loss_scale', [], tf.float32, trainable=False,
                                          initializer=tf1.constant_initializer(LOSS_SCALE_START))
            self.good_steps = tf1.get_variable(f'{name}_good_steps', [], tf.int64, trainable=False,
                                               initializer=tf1.zeros_initializer())
        self.dynamic = config.PRECISION == 'float16'

    def scale(self, loss):
        return loss * self.value if self.dynamic else loss

    def apply(self, optimizer, grads_and_vars):
        """optimizer's update from gradients of scale(loss) (or of their sums, ACCUM_STEPS)."""
        if not self.dynamic:
            return optimizer.apply_gradients(grads_and_vars)
        grads = [g / self.value for g, _ in grads_and_vars]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        update = tf.cond(finite, lambda: tf.group(optimizer.apply_gradients(
            zip(grads, [v for _, v in grads_and_vars]))), tf.no_op)
        with tf.control_dependencies([update]):
            good = tf.where(finite, self.good_steps + 1, tf.zeros_like(self.good_steps))
            grow = good >= LOSS_SCALE_GROWTH_STEPS
            value = tf.where(finite, tf.where(grow, self.value * 2.0, self.value), self.value / 2.0)
            return tf.group(self.value.assign(value),
                            self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good)))


class Training(Inference):
    """train.py's graph: Inference, plus batch statistics at the configured size, the
    discriminators, the losses and `train_ops[phase]`; feed `corners` and `real_corners` too.

    One replica's graph (replica()) is built by the strategy whose scope the graph is built in
    (replicas.py): each replica takes its share of the fed batch, the optimizers all-reduce the
    gradients into one update, the losses and batch statistics are the replicas' means. Outside a
    scope the default strategy builds it once for the whole batch.
    """

    def __init__(self):
        super().__init__()
        with tf1.variable_scope('state'):
            # Sums of LOSS_NAMES over the epoch's steps so far, so a resumed epoch's mean covers all.
            self.loss_sums = tf1.get_variable('loss_sums', [len(LOSS_NAMES)], tf.float64, trainable=False,
                                              initializer=tf1.zeros_initializer())
            # The stop rule's memory: the validation (realism, hole PSNR) of the latest phase-3 epochs,
            # oldest first, how many epochs that was, and phase 1's scores; saved with the weights.
            self.val_scores = tf1.get_variable('val_scores', [VAL_HISTORY, 2], tf.float64, trainable=False,
                                               initializer=tf1.zeros_initializer())
            self.val_count = _counter('val_count', tf.int64)
            self.val_baseline = tf1.get_variable('val_baseline', [2], tf.float64, trainable=False,
                                                 initializer=tf1.zeros_initializer())
        self.corners = tf1.placeholder(tf.int32, [None, 2], 'corners')
        self.real_corners = tf1.placeholder(tf.int32, [None, 2], 'real_corners')
        self.bn_decay = tf1.placeholder_with_default(config.BN_DECAY, [], 'bn_decay')
        strategy = tf.distribute.get_strategy()
        if config.ACCUM_STEPS > 1 and strategy.num_replicas_in_sync > 1:
            raise ValueError('ACCUM_STEPS > 1 works with one replica only')
        if config.PRECISION == 'float16' and strategy.num_replicas_in_sync > 1:
            raise ValueError('PRECISION=float16 works with one replica only (its loss scale skips steps)')
        replica = strategy.run(self.replica)
        local = strategy.experimental_local_results

        def mean(value):
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)

        def whole(value):  # this process's shares, in batch order
            parts = local(value)
            return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)

        self.mse, self.d_loss, self.g_adv, self.g_loss = (
            mean(replica[name]) for name in ('mse', 'd_loss', 'g_adv', 'g_loss'))
        self.real_logits, self.fake_logits, self.fake = (
            whole(replica[name]) for name in ('real_logits', 'fake_logits', 'fake'))
        self.output_batch_stats = to_uint8(self.fake)
        # The batch norms' moving averages, each moved towards its batch value's mean over the replicas.
        self.g_bn_updates = average_updates(self.bn_averages['g'], mean(replica['g_stats']), self.bn_decay)
        d_bn_updates = average_updates(self.bn_averages['d'], mean(replica['d_stats']), config.BN_DECAY)
        train = {phase: tf.group(*local(op)) for phase, op in replica['train'].items()}
        steps = {1: [train[1]] + self.g_bn_updates,
                 2: [train[2]] + d_bn_updates,
                 3: [train[3]] + self.g_bn_updates + d_bn_updates}
        self.losses = {1: {'mse': self.mse},
                       2: {'mse': self.mse, 'd_loss': self.d_loss},
                       3: {'mse': self.mse, 'd_loss': self.d_loss, 'g_adv': self.g_adv}}
        self.train_ops = {}
        for phase, ops in steps.items():
            losses = [tf.cast(self.losses[phase].get(name, 0.0), tf.float64) for name in LOSS_NAMES]
            with tf.control_dependencies(ops):
                self.train_ops[phase] = tf.group(self.step.assign_add(1), self.epoch_step.assign_add(1),
                                                 self.loss_sums.assign_add(tf.stack(losses)))
        if config.ACCUM_STEPS > 1:  # one replica: its values are plain tensors
            g_update, d_update, g_mse_grads, d_grads, g_grads, g_adv = replica['accumulate']
            self.stages = accumulation_stages(
                g_update, d_update, g_mse_grads, d_grads, g_grads,
                {'mse': self.mse, 'd_loss': self.d_loss, 'g_adv': g_adv}, self.g_bn_updates, d_bn_updates)
            self.step_losses = tf1.placeholder(tf.float64, [len(LOSS_NAMES)], 'step_losses')
            self.count_step = tf.group(self.step.assign_add(1), self.epoch_step.assign_add(1),
                                       self.loss_sums.assign_add(self.step_losses))
        self.val_value = tf1.placeholder(tf.float64, [2], 'val_value')
        self.record_val = tf.group(
            self.val_scores.assign(tf.concat([self.val_scores[1:], [self.val_value]], axis=0)),
            self.val_count.assign_add(1))
        self.set_val_baseline = self.val_baseline.assign(self.val_value)
        self.next_epoch = tf.group(self.epoch.assign_add(1), self.epoch_step.assign(0),
                                   self.loss_sums.assign(tf.zeros_like(self.loss_sums)))
        self.phase_value = tf1.placeholder(tf.int32, [], 'phase_value')
        self.set_phase = self.phase.assign(self.phase_value)
        self.mean_pixel_value = tf1.placeholder(tf.float32, [3], 'mean_pixel_value')
        self.set_mean_pixel = self.mean_pixel.assign(self.mean_pixel_value)
        self.g_vars = tf1.trainable_variables('generator')
        self.d_vars = tf1.trainable_variables('discriminator')
        self.variables = tf1.global_variables()

    def replica(self):
        """Both networks on this replica's share of the batch; returns its losses, outputs,
        batch statistics and one gradient step per phase.

        Phase 3 updates D and G in one session.run. D_FIRST: D's update runs first and
        G's adversarial loss is D's verdict after it (a second pass of D over the fakes);
        else both gradients come from the same pass and both updates follow.
        The optimizers are first applied G, then D: that order names Adam's
        beta1_power (G) and beta1_power_1 (D) in every checkpoint.
        """
        size, local = config.IMAGE_SIZE, config.LOCAL_SIZE
        x = tf.ensure_shape(to_float(replicas.share(self.images)), [None, size, size, 3])
        masks = tf.ensure_shape(replicas.share(self.masks), [None, size, size, 1])
        g_stats, d_stats = [], []  # (moving average, batch value) pairs
        # PRECISION: the networks compute in it; weights, batch-norm statistics and losses stay float32.
        dtype = DTYPES[config.PRECISION]

        def judge(image, patch, stats=None):
            return tf.cast(network.discriminator(tf.cast(image, dtype), tf.cast(patch, dtype), stats), tf.float32)

        net_input = tf.cast(network.generator_input(x, masks, self.mean_pixel), dtype)
        raw = tf.cast(network.generator(net_input, training=True, stats=g_stats), tf.float32)
        fake = network.keep_known(raw, x, masks)
        mse = network.mse_loss(x, fake, masks)
        fake_patches = network.crop_local(fake, replicas.share(self.corners), local)
        real_logits = judge(x, network.crop_local(x, replicas.share(self.real_corners), local), d_stats)
        fake_stats = []
        fake_logits = judge(fake, fake_patches, fake_stats)
        # One update of D's averages from both passes, not two racing ones (D never uses them:
        # it always normalises with batch statistics; the checkpoint keeps them all the same).
        d_stats = [(average, (real + fake) / 2) for (average, real), (_, fake) in zip(d_stats, fake_stats)]
        d_loss = network.discriminator_loss(real_logits, fake_logits)

        g_vars = tf1.trainable_variables('generator')
        d_vars = tf1.trainable_variables('discriminator')
        g_opt = tf1.train.AdamOptimizer(config.LEARNING_RATE, config.BETA1, name='g_adam')
        d_opt = tf1.train.AdamOptimizer(config.LEARNING_RATE, config.BETA1, name='d_adam')
        count = tf.distribute.get_replica_context().num_replicas_in_sync

        def share(loss):  # the optimizers sum the replicas' gradients: this makes it their mean
            return loss if count == 1 else loss / count

        g_scale, d_scale = LossScale('g'), LossScale('d')
        scaled_mse = network.generator_loss(mse)  # phase 1
        g_pretrain = g_scale.apply(g_opt, g_opt.compute_gradients(g_scale.scale(share(scaled_mse)), g_vars))
        d_grads = d_opt.compute_gradients(d_scale.scale(share(d_loss)), d_vars)
        d_train = d_scale.apply(d_opt, d_grads)
        if config.D_FIRST:
            with tf.control_dependencies([d_train]):  # D's variables are read after its update
                g_adv = network.adversarial_loss(judge(fake, fake_patches))
        else:
            g_adv = network.adversarial_loss(fake_logits)
        g_loss = network.generator_loss(mse, g_adv)
        g_grads = g_opt.compute_gradients(g_scale.scale(share(g_loss)), g_vars)
        if config.D_FIRST:
            joint = [g_scale.apply(g_opt, g_grads), d_train]
        else:
            # Both updates only after both sets of gradients exist.
            with tf.control_dependencies([g for g, _ in g_grads + d_grads]):
                joint = [g_scale.apply(g_opt, g_grads), d_scale.apply(d_opt, d_grads)]
        # The averages are the same variables on every replica: kept here, beside their batch values.
        self.bn_averages = {'g': [average for average, _ in g_stats], 'd': [average for average, _ in d_stats]}
        replica = dict(mse=mse, d_loss=d_loss, g_adv=g_adv, g_loss=g_loss, real_logits=real_logits,
                       fake_logits=fake_logits, fake=fake, g_stats=batch_values(g_stats),
                       d_stats=batch_values(d_stats),
                       train={1: tf.group(g_pretrain), 2: tf.group(d_train), 3: tf.group(*joint)})
        if config.ACCUM_STEPS > 1:
            acc_adv = network.adversarial_loss(fake_logits)  # a separate run: D's update is already in
            acc_loss = network.generator_loss(mse, acc_adv)
            replica['accumulate'] = ((g_opt, g_scale), (d_opt, d_scale),
                                     g_opt.compute_gradients(g_scale.scale(scaled_mse), g_vars), d_grads,
                                     g_opt.compute_gradients(g_scale.scale(acc_loss), g_vars), acc_adv)
        return replica

    def feed(self, images, masks, corners=None, real_corners=None):
        """The feed dict of one batch; the real images' patches sit at `corners` unless
        `real_corners` (their own holes' patches, REAL_OWN_HOLES) is given."""
        feed = {self.images: images, self.masks: masks}
        if corners is not None:
            feed[self.corners] = corners
            feed[self.real_corners] = corners if real_corners is None else real_corners
        return feed

    def epoch_means(self, sess, phase):
        """Each loss of `phase` averaged over every step of the epoch so far, resumes included."""
        sums, steps = sess.run([self.loss_sums, self.epoch_step])
        return {name: float(total) / max(1, steps) for name, total in zip(LOSS_NAMES, sums)
                if name in self.losses[phase]}

    def val_history(self, sess):
        """(realism, hole PSNR) lists of each phase-3 epoch recorded (record_val), oldest first, at
        most VAL_HISTORY, and phase 1's (realism, hole PSNR) (set_val_baseline)."""
        values, count, baseline = sess.run([self.val_scores, self.val_count, self.val_baseline])
        kept = values[VAL_HISTORY - min(int(count), VAL_HISTORY):]
        return [float(v) for v in kept[:, 0]], [float(v) for v in kept[:, 1]], tuple(float(v) for v in baseline)

    def recalibrate(self, sess, feeds):
        """Re-estimate the generator's batch-norm averages with the current weights.

        The moving averages lag weights that change fast; a cumulative average
        over fresh batches (decay k/(k+1) at batch k) matches them again.
        """
        for k, feed in enumerate(feeds):
            sess.run(self.g_bn_updates, {**feed, self.bn_decay: k / (k + 1.0)})


def batch_values(pairs):
    """The batch values of layer.batch_norm's (moving average, batch value) `pairs` as one vector,
    so the replicas' means take one all-reduce."""
    return tf.concat([value for _, value in pairs], axis=0)


def average_updates(averages, values, decay):
    """layer.moving_average_updates for `averages` from `values`, batch_values' vector of the same pairs."""
    sizes = [average.shape[0] for average in averages]
    return layer.moving_average_updates(zip(averages, tf.split(values, sizes)), decay)


def accumulation_stages(g_update, d_update, g_mse_grads, d_grads, g_grads, losses, g_bn_updates, d_bn_updates):
    """ACCUM_STEPS > 1: {phase: [(accumulate, losses, apply), ...]} that train.train_step runs:
    `accumulate` once per micro-batch (its gradients summed, batch norm updated on it), then
    `apply` once (the mean gradient, the sums zeroed). g_update, d_update: (optimizer, LossScale);
    losses: {'mse', 'd_loss', 'g_adv'} tensors of one micro-batch."""
    def stage(pairs, names, bn_updates):
        adds, applies, all_sums = [], [], []
        for (optimizer, scale), grads in pairs:
            with tf1.variable_scope('accumulate', reuse=tf1.AUTO_REUSE):
                sums = [tf1.get_variable(v.op.name, v.shape, trainable=False, initializer=tf1.zeros_initializer(),
                                         collections=[tf1.GraphKeys.LOCAL_VARIABLES]) for _, v in grads]
            adds += [s.assign_add(g) for s, (g, _) in zip(sums, grads)]
            mean = [(s / config.ACCUM_STEPS, v) for s, (_, v) in zip(sums, grads)]
            applies.append(scale.apply(optimizer, mean))
            all_sums += sums
        with tf.control_dependencies(applies):  # zeroed only once the update has read them
            apply = tf.group(*[s.assign(tf.zeros_like(s)) for s in all_sums])
        return tf.group(*adds, *bn_updates), {name: losses[name] for name in names}, apply

    g_stage = stage([(g_update, g_grads)], ('mse', 'g_adv'), g_bn_updates)
    d_stage = stage([(d_update, d_grads)], ('mse', 'd_loss'), d_bn_updates)
    joint = stage([(g_update, g_grads), (d_update, d_grads)], ('mse', 'd_loss', 'g_adv'), g_bn_updates + d_bn_updates)
    return {1: [stage([(g_update, g_mse_grads)], ('mse',), g_bn_updates)],
            2: [d_stage],
            3: [d_stage, g_stage] if config.D_FIRST else [joint]}
