"""Errors shown to the user."""


class OpenVasaError(Exception):
    """A problem with the user's input or environment.

    Reported as a clear one-line message (never a traceback).
    """
