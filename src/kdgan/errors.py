"""Errors that reach the user as one clear line: what is wrong and what to do."""


class KdganError(Exception):
    """A problem with the user's input or environment; the CLI prints it without a traceback."""


class TrainingDiverged(KdganError):
    """A loss became NaN or inf; the last good checkpoint is left untouched."""
