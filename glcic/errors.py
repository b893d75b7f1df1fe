"""The error a user can fix (a missing file, a bad value): cli.run prints it as one line."""


class UserError(Exception):
    """A mistake the user can fix; its message says what to do instead."""


def tf_reason(error):
    """The line of a TensorFlow error that says what went wrong, without TensorFlow's wrapping
    ('Graph execution error:', the node, its stack), at most 200 characters."""
    noise = ('Graph execution error', 'Detected at node', 'File ', 'Node:', '[[', 'Original stack trace', 'defined at')
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(noise)]
    return (said or lines or [type(error).__name__])[0][:200]
