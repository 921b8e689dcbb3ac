"""User-facing errors.

Every error a user can cause by bad input is a :class:`SpikeforgeError` whose message
names the cause and the fix. The CLI prints it as one line and exits non-zero; library
callers can catch it (it is also a ``ValueError``).
"""


KINDS = ("usage", "input", "busy", "user-code", "divergence", "resource", "interrupted", "internal")


class SpikeforgeError(ValueError):
    """Bad input or configuration; the message says what is wrong and how to fix it.

    ``kind`` classifies the failure for a program reading ``--json`` (one of :data:`KINDS`;
    default ``"input"``); pass ``kind=`` to set it for one error, or override it in a subclass.
    ``keep_partial``: whether the command line keeps what the failed run already wrote in its
    output folder (e.g. the last good checkpoint of a diverged training) instead of discarding it.
    """

    kind: str = "input"
    keep_partial: bool = False

    def __init__(self, *args: object, kind: str | None = None) -> None:
        super().__init__(*args)
        if kind is not None:
            self.kind = kind


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def first_line(error: BaseException, default: str = "") -> str:
    """The first line of ``error``'s message (``default`` when it has none): the part one error line can quote."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else default


def warn(message: str) -> None:
    """A warning for the user of a command: one line ``snn: warning: <message>`` on stderr (never stdout,
    which carries the ``--json`` object)."""
    import sys

    print(f"snn: warning: {one_line(message)}", file=sys.stderr, flush=True)
