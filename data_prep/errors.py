"""The one exception type for mistakes a user can make."""


class UserError(Exception):
    """A problem with the user's input: the CLI prints its message on one line and exits 2."""
