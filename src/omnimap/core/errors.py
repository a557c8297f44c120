"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class OmnimapError(Exception):
    """Base class: bad input or a missing/corrupt file the user can fix."""


class InputError(OmnimapError, ValueError):
    """Invalid argument (bbox, date, prompt, region, grid size...)."""


class DataError(OmnimapError):
    """A file the program needs is missing, corrupt, or of the wrong kind."""
