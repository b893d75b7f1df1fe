"""Layer helpers for the completion network and the discriminators.

Every helper takes an explicit `name` and creates its variables with
`tf.compat.v1.get_variable` under that scope, so the graph reads like the
paper's Table 1 and checkpoints name each layer.
"""
import functools
import os

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
# dilation_path's answers; the GLCIC_DILATION environment variable forces one (tests, bench.py).
DILATION_PATHS = ('native', 'custom-gradient', 'space-to-batch')


def _weights(shape):
    return tf1.get_variable('w', shape, initializer=tf1.glorot_uniform_initializer())


def _bias(channels):
    return tf1.get_variable('b', [channels], initializer=tf1.zeros_initializer())


def conv(x, channels, kernel, stride, name, bias=True):
    """Convolution with 'SAME' padding.

    Args: x [B,H,W,C]; channels out; kernel side; stride.
    Returns: [B,ceil(H/stride),ceil(W/stride),channels].
    """
    with tf1.variable_scope(name):
        w = _weights([kernel, kernel, x.shape[-1], channels])
        y = tf.nn.conv2d(x, w, strides=stride, padding='SAME')
        return tf.nn.bias_add(y, _bias(channels)) if bias else y


def dilated_conv(x, channels, kernel, rate, name, bias=True, gradient=True):
    """Dilated (atrous) convolution, stride 1, 'SAME' padding, odd kernel. Returns [B,H,W,channels].

    A graph that trains (`gradient`) differentiates it by dilation_path(x's type): every path
    gives the same result from the same variables, so a checkpoint moves freely between them.
    """
    with tf1.variable_scope(name):
        w = _weights([kernel, kernel, x.shape[-1], channels])
        path = dilation_path(x.dtype.name) if gradient else 'native'
        if path == 'space-to-batch':
            y = tf.nn.atrous_conv2d(x, w, rate, padding='SAME')
        elif path == 'custom-gradient':
            y = _dilated_conv2d(x, w, rate)
        else:
            y = tf.nn.conv2d(x, w, strides=1, padding='SAME', dilations=rate)
        return tf.nn.bias_add(y, _bias(channels)) if bias else y


def _dilated_conv2d(x, w, rate):
    """tf.nn.conv2d(x, w, dilations=rate, 'SAME') with its two gradients written out.

    TensorFlow's own CPU kernels run a dilated convolution forward but have no gradient for it;
    both gradients written as forward convolutions run on those kernels.
    """
    @tf.custom_gradient
    def conv(x, w):
        def grad(dy):  # dy [B,H,W,O]
            # dL/dx: the same dilated convolution of dy, kernel turned 180 degrees, in and out swapped.
            turned = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])  # [k,k,O,C]
            dx = tf.nn.conv2d(dy, turned, strides=1, padding='SAME', dilations=rate)
            # dL/dw[i,j,c,o] = sum over b,h,w of padded x[b, h + i*rate, w + j*rate, c] * dy[b,h,w,o]:
            # a convolution with stride `rate` of x (batch and channels swapped) by dy as the kernel.
            # (Measured faster than k*k shifted copies and one matrix product.)
            pad = (w.shape[0] - 1) // 2 * rate
            padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            dw = tf.nn.conv2d(tf.transpose(padded, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]),
                              strides=rate, padding='VALID')  # [C,k,k,O]
            return dx, tf.transpose(dw, [1, 2, 0, 3])
        return tf.nn.conv2d(x, w, strides=1, padding='SAME', dilations=rate), grad
    if w.shape[0] % 2 == 0:
        raise ValueError('dilated_conv: the kernel side must be odd')
    return conv(x, w)


@functools.lru_cache(maxsize=None)
def dilation_path(dtype='float32'):
    """How a training graph in `dtype` differentiates dilated convolutions on the default device:
    'native' where TensorFlow has the gradient kernels (cuDNN; oneDNN for the types it builds
    here), else 'custom-gradient' (_dilated_conv2d), else 'space-to-batch'. Tried once per type,
    on a small image, in a graph of its own."""
    forced = os.environ.get('GLCIC_DILATION')
    if forced:
        if forced not in DILATION_PATHS:
            raise ValueError(f'GLCIC_DILATION={forced}: choose one of {", ".join(DILATION_PATHS)}')
        return forced
    for path, conv in (('native', lambda x, w: tf.nn.conv2d(x, w, 1, 'SAME', dilations=2)),
                       ('custom-gradient', lambda x, w: _dilated_conv2d(x, w, 2))):
        with tf.Graph().as_default():
            x = tf1.placeholder(tf.float32, [1, 6, 6, 2])
            y = conv(tf.cast(x, dtype), tf.ones([3, 3, 2, 2], dtype))
            with tf1.Session() as sess:
                try:
                    sess.run(tf.gradients(y, x), {x: np.ones([1, 6, 6, 2], np.float32)})
                    return path
                except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                        tf.errors.NotFoundError):
                    pass
    return 'space-to-batch'


def deconv(x, channels, kernel, stride, name, bias=True):
    """Transposed convolution that upsamples by `stride`.

    The output shape comes from tf.shape(x), so any batch size and any H, W work.
    Args: x [B,H,W,C]. Returns: [B,H*stride,W*stride,channels].
    """
    with tf1.variable_scope(name):
        w = tf1.get_variable('w', [kernel, kernel, channels, x.shape[-1]],
                             initializer=tf1.glorot_uniform_initializer())
        shape = tf.shape(x)
        out_shape = tf.stack([shape[0], shape[1] * stride, shape[2] * stride, channels])
        y = tf.nn.conv2d_transpose(x, w, out_shape, strides=stride, padding='SAME')
        h, wd = x.shape[1], x.shape[2]
        y.set_shape([x.shape[0], h * stride if h is not None else None,
                     wd * stride if wd is not None else None, channels])
        return tf.nn.bias_add(y, _bias(channels)) if bias else y


def batch_norm(x, training, name, epsilon, stats=None):
    """Batch normalisation over B, H, W (fused kernel).

    Args: x [B,H,W,C]; training: Python bool. True normalises with the batch's
    statistics and appends (moving average, batch value) pairs to the list `stats`
    for moving_average_updates (the caller picks the decay, and with several
    replicas averages the values first). False normalises with the moving averages.
    Returns: a tensor shaped like x.
    """
    channels = x.shape[-1]
    with tf1.variable_scope(name, reuse=tf1.AUTO_REUSE):
        beta = tf1.get_variable('beta', [channels], initializer=tf1.zeros_initializer())
        gamma = tf1.get_variable('gamma', [channels], initializer=tf1.ones_initializer())
        stat = dict(trainable=False, collections=[tf1.GraphKeys.GLOBAL_VARIABLES,
                                                  tf1.GraphKeys.MOVING_AVERAGE_VARIABLES])
        moving_mean = tf1.get_variable('moving_mean', [channels],
                                       initializer=tf1.zeros_initializer(), **stat)
        moving_var = tf1.get_variable('moving_variance', [channels],
                                      initializer=tf1.ones_initializer(), **stat)
        if not training:
            y, _, _ = tf1.nn.fused_batch_norm(x, gamma, beta, moving_mean, moving_var,
                                              epsilon=epsilon, is_training=False)
            return y
        y, mean, var = tf1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)
        if stats is not None:
            stats += [(moving_mean, mean), (moving_var, var)]
        return y


def moving_average_updates(pairs, decay):
    """Ops that move each moving average towards its batch value by (1 - decay).

    Args: pairs: (variable [C], value [C]) as batch_norm records them; decay: float or tensor.
    """
    return [average.assign_sub((average - value) * (1.0 - decay)) for average, value in pairs]


def flatten(x):
    """[B,H,W,C] -> [B,H*W*C]; H, W, C must be known when the graph is built."""
    return tf.reshape(x, [-1, x.shape[1] * x.shape[2] * x.shape[3]])


def dense(x, units, name):
    """Fully connected layer. Args: x [B,N]. Returns: [B,units]."""
    with tf1.variable_scope(name):
        w = _weights([x.shape[-1], units])
        return tf.matmul(x, w) + _bias(units)
