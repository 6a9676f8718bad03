"""The one exception type that reaches a user as a one-line message."""


class NnqError(Exception):
    """A user-facing error: what is wrong and what to do, in one line.

    The command-line entry points print it as ``error: <message>`` on stderr and exit
    with status 2, without a traceback.
    """
