"""User-facing errors.

Every error a user can cause by bad input is a :class:`SpikeforgeError` whose message
names the cause and the fix. The CLI prints it as one line and exits non-zero; library
callers can catch it (it is also a ``ValueError``).
"""


class SpikeforgeError(ValueError):
    """Bad input or configuration; the message says what is wrong and how to fix it."""
