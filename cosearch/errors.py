"""One exception root. Bad user input raises ``CosearchError`` with the
received value and what is accepted; the CLI turns it into a one-line
message and exit code 2."""


class CosearchError(Exception):
    """Root of every error cosearch raises on purpose (bad input, bad files)."""


def first_line(e: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an error (its type name when it has no text), at most
    ``limit`` characters: how a failure is written into a journal, a log line or a message."""
    s = str(e).strip()
    if not s:
        return type(e).__name__ if isinstance(e, BaseException) else ""
    return s.splitlines()[0][:limit]
