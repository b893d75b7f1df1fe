"""The completion network, the global + local context discriminators, their
losses and training ops: one graph builder for train.py, test.py, bench.py
and export.py.

Layer tables follow Iizuka, Simo-Serra, Ishikawa, "Globally and Locally
Consistent Image Completion", SIGGRAPH 2017, Tables 1-2, at 128x128;
config.WIDTH divides their channel counts when the graph is built.
"""
import math
import os

import numpy as np
import tensorflow as tf

import config
import layer

tf1 = tf.compat.v1
tf1.disable_eager_execution()  # TF1 graph mode: placeholders, sessions, Saver
tf.get_logger().setLevel('ERROR')  # hide deprecation notices of the compat.v1 API

# Completion network: (kind, channels, kernel, stride or dilation rate).
# Every row but the last is followed by batch norm + ReLU; the last by tanh.
GENERATOR = [
    ('conv', 64, 5, 1),     # [B,128,128,C_in] -> [B,128,128,64]
    ('conv', 128, 3, 2),    # -> [B,64,64,128]
    ('conv', 128, 3, 1),
    ('conv', 256, 3, 2),    # -> [B,32,32,256]
    ('conv', 256, 3, 1),
    ('conv', 256, 3, 1),
    ('dilated', 256, 3, 2),  # [B,32,32,256] -> same, growing receptive field
    ('dilated', 256, 3, 4),
    ('dilated', 256, 3, 8),
    ('dilated', 256, 3, 16),
    ('conv', 256, 3, 1),
    ('conv', 256, 3, 1),
    ('deconv', 128, 4, 2),  # -> [B,64,64,128]
    ('conv', 128, 3, 1),
    ('deconv', 64, 4, 2),   # -> [B,128,128,64]
    ('conv', 32, 3, 1),
    ('conv', 3, 3, 1),      # -> [B,128,128,3], tanh
]

# H and W must divide by the product of the strides, for the deconvolutions to undo them.
SIZE_STEP = math.prod(arg for kind, _, _, arg in GENERATOR if kind == 'conv')

# Discriminator branches: channels of the 5x5 stride-2 convolutions, each + BN + ReLU.
GLOBAL_CONVS = [64, 128, 256, 512, 512]  # whole image [B,128,128,3] -> [B,4,4,512]
LOCAL_CONVS = [64, 128, 256, 512]        # local patch [B,64,64,3] -> [B,4,4,512]
BRANCH_UNITS = 1024                      # each branch ends in FC 1024 (+ ReLU: D_FC_RELU); concat -> FC 1
LOSS_NAMES = ('mse', 'd_loss', 'g_adv')  # the losses train.py logs, in the order of state/loss_sums
# Newer than some checkpoints: a resume that lacks them starts them from their initial values.
ADDED_STATE = ('state/loss_sums', 'state/g_loss_scale', 'state/g_good_steps', 'state/d_loss_scale',
               'state/d_good_steps', 'state/d_loss_epochs', 'state/d_loss_count')
D_LOSS_HISTORY = 64  # the latest phase-3 epochs whose mean d_loss the stop rule sees (train.stop_rule)
DTYPES = {'float32': tf.float32, 'float16': tf.float16, 'bfloat16': tf.bfloat16}  # config.PRECISION
# float16's dynamic loss scale: its start, and the finite steps after which it doubles.
LOSS_SCALE_START, LOSS_SCALE_GROWTH_STEPS = 2.0 ** 15, 2000


def _width(channels):
    """A layer's channels at config.WIDTH: the table's count divided, at least 1."""
    return max(1, channels // config.WIDTH)


def _bn_relu(x, training, name, stats):
    return tf.nn.relu(layer.batch_norm(x, training, name, config.BN_EPSILON, stats))


def _cast_weights(dtype):
    """A variable getter that hands the layers their weights and biases in `dtype`.

    The variables stay float32, so every checkpoint restores; batch norm keeps its
    float32 parameters, which its fused kernel takes for bfloat16 input too.
    """
    def cast(getter, name, *args, **kwargs):
        variable = getter(name, *args, **kwargs)
        return tf.cast(variable, dtype) if name.endswith(('/w', '/b')) else variable
    return cast


def generator(x, training, stats=None):
    """Completion network.

    Args: x [B,H,W,4] (image with hole filled + mask) or [B,H,W,3], float32 or
    bfloat16 (computed in that type); H, W divisible by 4. training: use batch
    statistics, appended to the list `stats` for the moving averages (layer.batch_norm).
    Returns: [B,H,W,3] in [-1, 1], of x's type.
    """
    getter = None if x.dtype == tf.float32 else _cast_weights(x.dtype)
    with tf1.variable_scope('generator', reuse=tf1.AUTO_REUSE, custom_getter=getter):
        for i, (kind, channels, kernel, arg) in enumerate(GENERATOR, 1):
            name = f'{kind}{i}'
            last = i == len(GENERATOR)
            channels = channels if last else _width(channels)  # the output stays RGB
            if kind == 'conv':
                x = layer.conv(x, channels, kernel, arg, name, bias=last)
            elif kind == 'dilated':
                x = layer.dilated_conv(x, channels, kernel, arg, name, bias=False, gradient=training)
            else:
                x = layer.deconv(x, channels, kernel, arg, name, bias=False)
            x = tf.nn.tanh(x) if last else _bn_relu(x, training, f'{name}_bn', stats)
        return x


def _branch(x, convs, name, stats):
    with tf1.variable_scope(name):
        for i, channels in enumerate(convs, 1):
            x = layer.conv(x, _width(channels), 5, 2, f'conv{i}', bias=False)
            x = _bn_relu(x, True, f'conv{i}_bn', stats)
        x = layer.dense(layer.flatten(x), _width(BRANCH_UNITS), 'fc')
        # Without a nonlinearity, FC-1024 -> concat -> FC-1 is a single linear map.
        return tf.nn.relu(x) if config.D_FC_RELU else x


def discriminator(image, patch, stats=None):
    """Global + local context discriminator (always with batch statistics).

    Args: image [B,IMAGE_SIZE,IMAGE_SIZE,3]; patch [B,LOCAL_SIZE,LOCAL_SIZE,3], both of one
    float type (computed in it); stats: a list for the batch norms' (moving average, batch
    value) pairs (layer.batch_norm).
    Returns: logits [B] (real > 0), of image's type.
    """
    getter = None if image.dtype == tf.float32 else _cast_weights(image.dtype)
    with tf1.variable_scope('discriminator', reuse=tf1.AUTO_REUSE, custom_getter=getter):
        both = tf.concat([_branch(image, GLOBAL_CONVS, 'global', stats),
                          _branch(patch, LOCAL_CONVS, 'local', stats)], axis=1)  # [B,2048] at WIDTH 1
        return tf.squeeze(layer.dense(both, 1, 'fc'), axis=1)


def crop_local(images, corners, size):
    """Cut [B,size,size,C] patches at per-image top-left corners [B,2] (y, x), inside the graph."""
    offsets = tf.range(size)
    rows = corners[:, 0:1] + offsets  # [B,size]
    cols = corners[:, 1:2] + offsets
    images = tf.gather(images, rows, axis=1, batch_dims=1)  # [B,size,W,C]
    return tf.gather(images, cols, axis=2, batch_dims=1)    # [B,size,size,C]


def generator_input(x, masks, mean_pixel):
    """What the completion network sees: the paper's 4 channels or the common TF1 code's 3."""
    if config.MASK_CHANNEL:
        filled = x * (1.0 - masks) + mean_pixel * masks
        return tf.concat([filled, masks], axis=3)
    return x * (1.0 - masks)


def _bce(logits, label):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(logits), label), logits=logits))


def _to_float(images):
    """data.to_float inside the graph: uint8 [0, 255] -> float32 [-1, 1]."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def _to_uint8(images):
    """data.to_uint8 inside the graph (round half to even, like np.rint): [-1, 1] -> uint8."""
    return tf.cast(tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0), tf.uint8)


def _keep_known(raw, x, masks):
    """The completion: the network's pixels in the hole, the input's everywhere else."""
    return raw * masks + x * (1.0 - masks)


def _share(batch):
    """This replica's rows of a batch that is fed whole (all of them with one replica)."""
    context = tf.distribute.get_replica_context()
    count = context.num_replicas_in_sync
    if count == 1:
        return batch
    rows, index = tf.shape(batch)[0], context.replica_id_in_sync_group
    return batch[index * rows // count:(index + 1) * rows // count]


def _flat(pairs):
    """The batch values of `pairs` as one vector, so the replicas' means take one all-reduce."""
    return tf.concat([value for _, value in pairs], axis=0)


def _average_updates(averages, values, decay):
    """layer.moving_average_updates for `averages` from `values`, _flat's vector of their batch values."""
    sizes = [average.shape[0] for average in averages]
    return layer.moving_average_updates(zip(averages, tf.split(values, sizes)), decay)


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


class Model:
    """One graph, built for one job.

    Model() is train.py's: feed `images` (uint8), `masks`, `corners` and `real_corners`
    (feed()); run a `train_ops[phase]` (one session.run per step).
    Model(training=False) is the completion network, its input and the saved state only
    (test.py, export.py): feed `images` and `masks`, fetch `output` or call complete().
    A Saver over `variables` restores either from any checkpoint train.py wrote.
    """

    def __init__(self, training=True, batch_stats=False, bfloat16=False):
        """Args: training: also build the discriminators, the losses and both optimizers.
        batch_stats: with training=False, also build `output_batch_stats` (training has it).
        bfloat16: run the inference network in bfloat16 (faster on CPUs with bfloat16
        instructions, BENCHMARKS.md); the variables stay float32.
        """
        self._build_input_and_state()
        self._build_inference(tf.bfloat16 if bfloat16 else tf.float32)
        if training:
            self._build_training()
        elif batch_stats:
            raw = generator(generator_input(self.x, self.masks, self.mean_pixel), training=True)
            self.output_batch_stats = _to_uint8(_keep_known(raw, self.x, self.masks))
        self.variables = tf1.global_variables()

    def _build_input_and_state(self):
        """Images and holes to feed, and the non-weight variables every checkpoint holds."""
        self.images = tf1.placeholder(tf.uint8, [None, None, None, 3], 'images')
        self.masks = tf1.placeholder(tf.float32, [None, None, None, 1], 'masks')
        with tf1.variable_scope('state'):
            self.mean_pixel = tf1.get_variable('mean_pixel', [3], trainable=False,
                                               initializer=tf1.zeros_initializer())
            self.step = self._counter('step', tf.int64)
            self.epoch = self._counter('epoch', tf.int64)
            self.epoch_step = self._counter('epoch_step', tf.int64)
            self.phase = tf1.get_variable('phase', [], tf.int32, trainable=False,
                                          initializer=tf1.constant_initializer(1))
        self.x = _to_float(self.images)

    def _build_inference(self, dtype):
        """Moving-average statistics, any image size divisible by 4; float32 and uint8 out."""
        net_input = tf.cast(generator_input(self.x, self.masks, self.mean_pixel), dtype)
        raw = tf.cast(generator(net_input, training=False), tf.float32)
        self.completion = _keep_known(raw, self.x, self.masks)
        self.output = _to_uint8(self.completion)

    def _build_training(self):
        """Batch statistics at the configured size, the discriminators, the losses, the train ops.

        One replica's graph (_build_replica) is built by the strategy whose scope the Model is
        built in (replicas.py): each replica takes its share of the fed batch, the optimizers
        all-reduce the gradients into one update, the losses and batch statistics are the
        replicas' means. Outside a scope the default strategy builds it once for the whole batch.
        """
        with tf1.variable_scope('state'):
            # Sums of LOSS_NAMES over the epoch's steps so far, so a resumed epoch's mean covers all.
            self.loss_sums = tf1.get_variable('loss_sums', [len(LOSS_NAMES)], tf.float64, trainable=False,
                                              initializer=tf1.zeros_initializer())
            # The stop rule's memory: the mean d_loss of the latest phase-3 epochs, oldest first, and
            # how many epochs that was; saved with the weights, so a resume and every worker agree.
            self.d_loss_epochs = tf1.get_variable('d_loss_epochs', [D_LOSS_HISTORY], tf.float64, trainable=False,
                                                  initializer=tf1.zeros_initializer())
            self.d_loss_count = self._counter('d_loss_count', tf.int64)
        self.corners = tf1.placeholder(tf.int32, [None, 2], 'corners')
        self.real_corners = tf1.placeholder(tf.int32, [None, 2], 'real_corners')
        self.bn_decay = tf1.placeholder_with_default(config.BN_DECAY, [], 'bn_decay')
        strategy = tf.distribute.get_strategy()
        if config.ACCUM_STEPS > 1 and strategy.num_replicas_in_sync > 1:
            raise ValueError('ACCUM_STEPS > 1 works with one replica only')
        if config.PRECISION == 'float16' and strategy.num_replicas_in_sync > 1:
            raise ValueError('PRECISION=float16 works with one replica only (its loss scale skips steps)')
        replica = strategy.run(self._build_replica)
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
        self.output_batch_stats = _to_uint8(self.fake)
        g_averages, d_averages = self._averages
        self.g_bn_updates = _average_updates(g_averages, mean(replica['g_stats']), self.bn_decay)
        d_bn_updates = _average_updates(d_averages, mean(replica['d_stats']), config.BN_DECAY)
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
            self._build_accumulation(*replica['accumulate'], d_bn_updates)
        epoch_d_loss = self.loss_sums[1] / tf.cast(tf.maximum(self.epoch_step, 1), tf.float64)
        self.record_d_loss = tf.group(
            self.d_loss_epochs.assign(tf.concat([self.d_loss_epochs[1:], [epoch_d_loss]], axis=0)),
            self.d_loss_count.assign_add(1))
        self.next_epoch = tf.group(self.epoch.assign_add(1), self.epoch_step.assign(0),
                                   self.loss_sums.assign(tf.zeros_like(self.loss_sums)))
        self.phase_value = tf1.placeholder(tf.int32, [], 'phase_value')
        self.set_phase = self.phase.assign(self.phase_value)
        self.mean_pixel_value = tf1.placeholder(tf.float32, [3], 'mean_pixel_value')
        self.set_mean_pixel = self.mean_pixel.assign(self.mean_pixel_value)
        self.g_vars = tf1.trainable_variables('generator')
        self.d_vars = tf1.trainable_variables('discriminator')

    def _build_replica(self):
        """Both networks on this replica's share of the batch; returns its losses, outputs,
        batch statistics and one gradient step per phase.

        Phase 3 updates D and G in one session.run. D_FIRST: D's update runs first and
        G's adversarial loss is D's verdict after it (a second pass of D over the fakes);
        else both gradients come from the same pass and both updates follow.
        The optimizers are first applied G, then D: that order names Adam's
        beta1_power (G) and beta1_power_1 (D) in every checkpoint.
        """
        size, local = config.IMAGE_SIZE, config.LOCAL_SIZE
        x = tf.ensure_shape(_to_float(_share(self.images)), [None, size, size, 3])
        masks = tf.ensure_shape(_share(self.masks), [None, size, size, 1])
        g_stats, d_stats = [], []  # (moving average, batch value) pairs
        # PRECISION: the networks compute in it; weights, batch-norm statistics and losses stay float32.
        dtype = DTYPES[config.PRECISION]

        def judge(image, patch, stats=None):
            return tf.cast(discriminator(tf.cast(image, dtype), tf.cast(patch, dtype), stats), tf.float32)

        net_input = tf.cast(generator_input(x, masks, self.mean_pixel), dtype)
        raw = tf.cast(generator(net_input, training=True, stats=g_stats), tf.float32)
        fake = _keep_known(raw, x, masks)
        mse = tf.reduce_mean(masks * tf.square(fake - x))
        fake_patches = crop_local(fake, _share(self.corners), local)
        real_logits = judge(x, crop_local(x, _share(self.real_corners), local), d_stats)
        fake_stats = []
        fake_logits = judge(fake, fake_patches, fake_stats)
        # One update of D's averages from both passes, not two racing ones (D never uses them:
        # it always normalises with batch statistics; the checkpoint keeps them all the same).
        d_stats = [(average, (real + fake) / 2) for (average, real), (_, fake) in zip(d_stats, fake_stats)]
        # Plain cross-entropy: Adam does not care about the scale, and STOP_LOSS reads it in nats.
        d_loss = _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)
        self._averages = [a for a, _ in g_stats], [a for a, _ in d_stats]  # the same in every replica

        g_vars = tf1.trainable_variables('generator')
        d_vars = tf1.trainable_variables('discriminator')
        g_opt = tf1.train.AdamOptimizer(config.LEARNING_RATE, config.BETA1, name='g_adam')
        d_opt = tf1.train.AdamOptimizer(config.LEARNING_RATE, config.BETA1, name='d_adam')
        count = tf.distribute.get_replica_context().num_replicas_in_sync

        def share(loss):  # the optimizers sum the replicas' gradients: this makes it their mean
            return loss if count == 1 else loss / count

        g_scale, d_scale = LossScale('g'), LossScale('d')
        scaled_mse = config.MSE_SCALE * mse
        g_pretrain = g_scale.apply(g_opt, g_opt.compute_gradients(g_scale.scale(share(scaled_mse)), g_vars))
        d_grads = d_opt.compute_gradients(d_scale.scale(share(d_loss)), d_vars)
        d_train = d_scale.apply(d_opt, d_grads)
        if config.D_FIRST:
            with tf.control_dependencies([d_train]):  # D's variables are read after its update
                g_adv = _bce(judge(fake, fake_patches), 1.0)
        else:
            g_adv = _bce(fake_logits, 1.0)
        g_loss = scaled_mse + config.ALPHA * g_adv if config.ADVERSARIAL_G else scaled_mse
        g_grads = g_opt.compute_gradients(g_scale.scale(share(g_loss)), g_vars)
        if config.D_FIRST:
            joint = [g_scale.apply(g_opt, g_grads), d_train]
        else:
            # Both updates only after both sets of gradients exist.
            with tf.control_dependencies([g for g, _ in g_grads + d_grads]):
                joint = [g_scale.apply(g_opt, g_grads), d_scale.apply(d_opt, d_grads)]
        replica = dict(mse=mse, d_loss=d_loss, g_adv=g_adv, g_loss=g_loss, real_logits=real_logits,
                       fake_logits=fake_logits, fake=fake, g_stats=_flat(g_stats), d_stats=_flat(d_stats),
                       train={1: tf.group(g_pretrain), 2: tf.group(d_train), 3: tf.group(*joint)})
        if config.ACCUM_STEPS > 1:
            acc_adv = _bce(fake_logits, 1.0)  # a separate run: D's update is already in
            acc_loss = scaled_mse + config.ALPHA * acc_adv if config.ADVERSARIAL_G else scaled_mse
            replica['accumulate'] = ((g_opt, g_scale), (d_opt, d_scale),
                                     g_opt.compute_gradients(g_scale.scale(scaled_mse), g_vars), d_grads,
                                     g_opt.compute_gradients(g_scale.scale(acc_loss), g_vars), acc_adv)
        return replica

    def _build_accumulation(self, g_update, d_update, g_mse_grads, d_grads, g_grads, g_adv, d_bn_updates):
        """ACCUM_STEPS > 1: `stages[phase]`, a list of (accumulate, losses, apply) that
        train.train_step runs: `accumulate` once per micro-batch (its gradients summed, batch
        norm updated on it), then `apply` once (the mean gradient, accumulators zeroed);
        then `count_step` with the step's mean losses. g_update, d_update: (optimizer, LossScale)."""
        def stage(pairs, losses, bn_updates):
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
            return tf.group(*adds, *bn_updates), losses, apply

        g_stage = stage([(g_update, g_grads)], {'mse': self.mse, 'g_adv': g_adv}, self.g_bn_updates)
        d_stage = stage([(d_update, d_grads)], {'mse': self.mse, 'd_loss': self.d_loss}, d_bn_updates)
        joint = stage([(g_update, g_grads), (d_update, d_grads)],
                      {'mse': self.mse, 'd_loss': self.d_loss, 'g_adv': g_adv}, self.g_bn_updates + d_bn_updates)
        self.stages = {1: [stage([(g_update, g_mse_grads)], {'mse': self.mse}, self.g_bn_updates)],
                       2: [d_stage],
                       3: [d_stage, g_stage] if config.D_FIRST else [joint]}
        self.step_losses = tf1.placeholder(tf.float64, [len(LOSS_NAMES)], 'step_losses')
        self.count_step = tf.group(self.step.assign_add(1), self.epoch_step.assign_add(1),
                                   self.loss_sums.assign_add(self.step_losses))

    @staticmethod
    def _counter(name, dtype):
        return tf1.get_variable(name, [], dtype, trainable=False, initializer=tf1.zeros_initializer())

    def feed(self, images, masks, corners=None, real_corners=None):
        """The feed dict of one batch; the real images' patches sit at `corners` unless
        `real_corners` (their own holes' patches, REAL_OWN_HOLES) is given."""
        feed = {self.images: images, self.masks: masks}
        if corners is not None:
            feed[self.corners] = corners
            feed[self.real_corners] = corners if real_corners is None else real_corners
        return feed

    def state(self, sess):
        """(phase, epoch, epoch_step, step) as Python ints."""
        return tuple(int(v) for v in sess.run([self.phase, self.epoch, self.epoch_step, self.step]))

    def epoch_means(self, sess, phase):
        """Each loss of `phase` averaged over every step of the epoch so far, resumes included."""
        sums, steps = sess.run([self.loss_sums, self.epoch_step])
        return {name: float(total) / max(1, steps) for name, total in zip(LOSS_NAMES, sums)
                if name in self.losses[phase]}

    def d_loss_history(self, sess):
        """The mean d_loss of each phase-3 epoch recorded (record_d_loss), oldest first, at most D_LOSS_HISTORY."""
        values, count = sess.run([self.d_loss_epochs, self.d_loss_count])
        return [float(v) for v in values[D_LOSS_HISTORY - min(int(count), D_LOSS_HISTORY):]]

    def complete(self, sess, images, masks, batch_stats=False):
        """Fill the holes of uint8 images [N,H,W,3] with masks [N,H,W,1]; returns uint8.

        batch_stats: normalise with each batch's statistics instead of the moving averages.
        """
        if batch_stats and not hasattr(self, 'output_batch_stats'):
            raise ValueError('batch_stats=True needs a Model built with training=True or batch_stats=True')
        out = np.empty(images.shape, np.uint8)
        fetch = self.output_batch_stats if batch_stats else self.output
        for i in range(0, len(images), config.BATCH_SIZE):
            part = slice(i, i + config.BATCH_SIZE)
            out[part] = sess.run(fetch, self.feed(images[part], masks[part]))
        return out

    def recalibrate(self, sess, feeds):
        """Re-estimate the generator's batch-norm averages with the current weights.

        The moving averages lag weights that change fast; a cumulative average
        over fresh batches (decay k/(k+1) at batch k) matches them again.
        """
        for k, feed in enumerate(feeds):
            sess.run(self.g_bn_updates, {**feed, self.bn_decay: k / (k + 1.0)})


def session_config():
    """GPU memory grows as needed instead of being taken whole at the start."""
    settings = tf1.ConfigProto()
    settings.gpu_options.allow_growth = True
    return settings


def make_session():
    """A session on the GPU when TensorFlow sees one, else the CPU."""
    return tf1.Session(config=session_config())


def device_name():
    """The device train.py and test.py run on, for their first line."""
    gpus = tf.config.list_physical_devices('GPU')
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU {details.get('device_name', gpus[0].name)}"
    onednn = 'on' if onednn_enabled() else 'off'
    return f'CPU ({os.cpu_count()} cores, oneDNN {onednn}; no GPU visible to TensorFlow)'


def onednn_enabled():
    """Whether TensorFlow runs its CPU ops through oneDNN (TF_ENABLE_ONEDNN_OPTS, or its CPU default)."""
    from tensorflow.python.util import _pywrap_util_port  # TensorFlow's own answer; no public API
    return bool(_pywrap_util_port.IsMklEnabled())
