"""The one error type users see: a single line naming where the problem is and what was expected."""


class MemwallError(Exception):
    """Bad input or an impossible request. `str(err)` is the whole one-line message."""
