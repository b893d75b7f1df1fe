"""The paper's networks and losses: the completion network, the global + local context
discriminators, the local crop and the losses, as Iizuka, Simo-Serra, Ishikawa, "Globally and
Locally Consistent Image Completion", SIGGRAPH 2017 give them (Tables 1-2, section 3.3) at 128x128.
config.WIDTH divides their channel counts when the graph is built.

The graphs built from them for training and for completing photos are in glcic/graphs.py.
"""
import math

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

def width(channels):
    """A layer's channels at config.WIDTH: the table's count divided, at least 1."""
    return max(1, channels // config.WIDTH)


def architecture_of(shapes, prefer=()):
    """MASK_CHANNEL and WIDTH as a checkpoint's generator shows them, from its {variable name: shape}
    ({} without a generator): the first layer's input channels, and a WIDTH that gives every
    convolution but the last (the RGB output) its channels: the first of `prefer` that does (several
    give the same channels, e.g. 52 to 64), else the smallest."""
    first = shapes.get('generator/conv1/w')
    if first is None or len(first) != 4:
        return {}
    found = {'MASK_CHANNEL': first[2] == 4}  # image + mask, or the image alone
    convs = [(f'generator/{kind}{i}/w', channels) for i, (kind, channels, _, _) in enumerate(GENERATOR[:-1], 1)
             if kind in ('conv', 'dilated')]  # [k,k,in,out]; a deconvolution's is [k,k,out,in]
    widths = [w for w in range(1, max(c for _, c in convs) + 1)
              if all(list(shapes.get(name, []))[-1:] == [max(1, c // w)] for name, c in convs)]
    if widths:
        found['WIDTH'] = next((w for w in prefer if w in widths), widths[0])
    return found


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
            channels = channels if last else width(channels)  # the output stays RGB
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
            x = layer.conv(x, width(channels), 5, 2, f'conv{i}', bias=False)
            x = _bn_relu(x, True, f'conv{i}_bn', stats)
        x = layer.dense(layer.flatten(x), width(BRANCH_UNITS), 'fc')
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


def keep_known(raw, x, masks):
    """The completion C(x, M_c): the network's pixels in the hole, the input's everywhere else."""
    return raw * masks + x * (1.0 - masks)


def _bce(logits, label):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(logits), label), logits=logits))


def mse_loss(x, completion, masks):
    """The paper's weighted MSE loss: mask * (completion - x)^2, averaged over every
    pixel as Torch's MSECriterion does, on x in [-1, 1] (MSE_SCALE puts it on the paper's [0, 1])."""
    return tf.reduce_mean(masks * tf.square(completion - x))


def discriminator_loss(real_logits, fake_logits):
    """The discriminators' side of the paper's GAN loss: real -> 1, completions -> 0, in nats
    (2 ln 2 = 1.39 when they cannot tell). Plain: Adam does not care about the scale."""
    return _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)


def adversarial_loss(fake_logits):
    """The completion network's adversarial term: the discriminators' cross-entropy of calling its
    completions real (the non-saturating form of the GAN loss's log(1 - D(C(x, M_c), M_c)))."""
    return _bce(fake_logits, 1.0)


def generator_loss(mse, adversarial=None):
    """The completion network's loss: MSE_SCALE * mse alone in phase 1; in phase 3 the joint loss,
    + ALPHA * the adversarial term (the paper's α), unless ADVERSARIAL_G is off (the common TF1 code)."""
    scaled = config.MSE_SCALE * mse
    return scaled if adversarial is None or not config.ADVERSARIAL_G else scaled + config.ALPHA * adversarial
