"""User-facing errors.

A :class:`UserError` is a problem with the user's input or environment (missing dataset,
unreadable image, missing weights offline, bad option). The CLI prints its message as one
line and exits with status 2, with no traceback. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An input/environment problem; the message names the problem and the fix."""

    def one_line(self) -> str:
        # DataLoader workers re-raise our errors with the worker traceback prepended;
        # the last non-empty line is always our own message.
        lines = [ln.strip() for ln in str(self).splitlines() if ln.strip()]
        if not lines:
            return type(self).__name__
        last = lines[-1]
        prefix = f"{type(self).__module__}.{type(self).__name__}: "
        for p in (prefix, f"{type(self).__name__}: "):
            if last.startswith(p):
                last = last[len(p):]
        return last


class DatasetNotFoundError(UserError):
    """A registered dataset is not under the data root."""


class UnreadableImageError(UserError):
    """An image file cannot be decoded."""


class MissingWeightsError(UserError):
    """Pretrained weights are needed but not available (e.g. offline)."""


class ConfigError(UserError):
    """An unknown option, a bad value or an inconsistent run configuration."""


class TrainingDivergedError(UserError):
    """Training produced a non-finite loss (the settings, e.g. the learning rate, diverge)."""


class NonFiniteScoresError(UserError):
    """A method produced NaN or infinite scores."""
