"""The exceptions the command line turns into a one-line message, and the exit statuses it uses.

Exit statuses of `facesr`:
    0  done
    1  an error in what was given (a file, an option): `UserError`, one line on stderr
    2  a command line argparse cannot parse
    3  an internal error (a bug): one line, the traceback with FACESR_DEBUG=1
    4  incomplete input: the input was cut off or damaged part way; the output holds what
       could be decoded and stderr says how much (`IncompleteInput`)
  130  interrupted
"""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INCOMPLETE = 4
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Something wrong with what the user gave us (a file, an option), not a bug in facesr."""


class IncompleteInput(UserError):
    """The input ended or broke before its announced end; what could be decoded was written.

    `done` and `expected` count frames (or, for a still image, 0 of 1 when it is cut off).
    """

    def __init__(self, message: str, done: int = 0, expected: int | None = None):
        super().__init__(message)
        self.done = done
        self.expected = expected
