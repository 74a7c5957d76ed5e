"""The one exception type for mistakes a user can make, and its kind for files found damaged."""


class UserError(Exception):
    """A problem with the user's input: the CLI prints its message on one line and exits 2."""


class CorruptFileError(UserError, ValueError):
    """A saved file that cannot be read (cut short, not JSON, not Arrow): the message names the file.

    Also a `ValueError`, so code that treats an unreadable record as missing (`except ValueError`) still
    does."""
