"""The error every ensemble step raises."""


class EnsembleError(ValueError):
    """Bad input to an ensemble: the message names the file (and line) or member and the reason."""
