"""Exceptions for user-facing errors.

The command line catches :class:`LsdebmError` and prints a one-line message without a
traceback; anything else is a bug and keeps its traceback.
"""


class LsdebmError(Exception):
    """Base class for errors caused by user input, files or settings."""


class InputError(LsdebmError):
    """An input file, array or option is missing, malformed or out of range."""


class CheckpointError(LsdebmError):
    """A checkpoint is missing, incomplete or incompatible with the requested model."""


class InputWarning(UserWarning):
    """An input is usable but was changed or looks suspicious (squeezed axes, border contact, ...).

    The command line prints these as one ``lsdebm: warning: ...`` line; napari shows them as
    notifications.
    """
