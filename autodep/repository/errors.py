"""The repository's refusals (each carries its HTTP status, as every AutodepError)."""

from __future__ import annotations

from autodep.errors import AutodepError


class ModelControlDisabled(AutodepError):
    """Load and unload requests while --model-control-mode is not `explicit`."""

    status = 400


class LoadFailed(AutodepError):
    """A model (version) could not be loaded or failed its warm-up; the old one serves on."""

    status = 400


class OverBudget(AutodepError):
    """A load whose workers do not fit in --max-total-workers beside the running ones."""

    status = 409


def reason(error: BaseException) -> str:
    """An error as the index shows it."""
    if isinstance(error, AutodepError):
        return error.message
    return f"{type(error).__name__}: {error}"
