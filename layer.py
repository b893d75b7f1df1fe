"""Layer helpers for the completion network and the discriminators.

Every helper takes an explicit `name` and creates its variables with
`tf.compat.v1.get_variable` under that scope, so the graph reads like the
paper's Table 1 and checkpoints name each layer.
"""
import functools

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


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
    """Dilated (atrous) convolution, stride 1, 'SAME' padding. Returns [B,H,W,channels].

    Native (cuDNN on a GPU, oneDNN on a CPU) where TensorFlow can also differentiate it.
    TensorFlow's own CPU kernels have no gradient for a dilated conv2d, so a graph that
    trains there (`gradient`) computes it by space-to-batch instead: the same result, the
    same variables, so a checkpoint from either path restores into the other.
    """
    with tf1.variable_scope(name):
        w = _weights([kernel, kernel, x.shape[-1], channels])
        if gradient and dilation_path() == 'space-to-batch':
            y = tf.nn.atrous_conv2d(x, w, rate, padding='SAME')
        else:
            y = tf.nn.conv2d(x, w, strides=1, padding='SAME', dilations=rate)
        return tf.nn.bias_add(y, _bias(channels)) if bias else y


@functools.lru_cache(maxsize=None)
def dilation_path():
    """'native' if the running TensorFlow differentiates a dilated conv2d on its default
    device, else 'space-to-batch' (tried once, on a 4x4 image, in a graph of its own)."""
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [1, 4, 4, 1])
        y = tf.nn.conv2d(x, tf.ones([3, 3, 1, 1]), strides=1, padding='SAME', dilations=2)
        with tf1.Session() as sess:
            try:
                sess.run(tf.gradients(y, x), {x: np.ones([1, 4, 4, 1], np.float32)})
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
                return 'space-to-batch'
    return 'native'


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
