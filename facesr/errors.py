"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Something wrong with what the user gave us (a file, an option), not a bug in facesr."""
