"""Errors whose message is meant for the user as it stands (one line, no traceback)."""


class UserFacingError(Exception):
    """Bad input, a missing file, a checkpoint that does not fit: the CLI prints the message and exits 2."""
