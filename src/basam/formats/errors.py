"""The one error type of checkpoint reading and writing."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why in one line."""
