"""User-facing errors: the CLI prints them as one line, the GUI shows them in a banner."""


class UserError(Exception):
    """A problem the user can fix (bad file, bad option). Its message is shown as is, without traceback."""


class CheckpointError(UserError):
    """A checkpoint file was refused: wrong paper, corrupt, unsafe, or of the wrong shape."""


class Cancelled(Exception):
    """Raised by CancelToken.check() when the work was cancelled."""
