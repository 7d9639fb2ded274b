"""User-facing errors: the command line prints one line and exits with the error's code."""


class VaekitError(Exception):
    """Bad input or an impossible setting. Printed as one line; exit code 2."""

    exit_code = 2


class ConfigError(VaekitError):
    """A configuration key that does not exist or a value that cannot be used."""


class DataError(VaekitError):
    """A dataset that is missing, corrupt, truncated or inconsistent."""


class CheckpointError(VaekitError):
    """A checkpoint that is missing, corrupt, or not in vaekit's safetensors + JSON format."""


class TrainingDiverged(VaekitError):
    """A loss term became non-finite; the last good checkpoint is left as it was. Exit code 3."""

    exit_code = 3
