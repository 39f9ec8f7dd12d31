"""The one error type users see: a single line naming where the problem is and what was expected."""


class MemwallError(Exception):
    """Bad input or an impossible request. `str(err)` is the whole one-line message."""


SHOWN_CHARS = 60  # a value longer than this is shown cut, in messages


def cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` for a one-line message: line breaks and other unprintable characters escaped
    ("\\n", "\\x85"), cut to `limit` characters with an ellipsis."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."
