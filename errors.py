"""The error a user can fix (a missing file, a bad value): cli.run prints it as one line."""


class UserError(Exception):
    """A mistake the user can fix; its message says what to do instead."""
