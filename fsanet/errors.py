"""One small exception hierarchy; the CLI maps each class to an exit code.

Every error the toolkit raises on bad input is an `FsanetError`. The classes about bad input
also derive from `ValueError`, so code written against the built-in type keeps working.
"""

from __future__ import annotations


class FsanetError(Exception):
    """Base class of every error the toolkit raises on purpose."""

    exit_code = 2


class DataError(FsanetError, ValueError):
    """A data file or folder, an option or an argument is missing, unreadable or malformed."""


class WeightsError(FsanetError, ValueError):
    """A weights file does not match the architecture it claims to hold."""


class ModelError(FsanetError, ValueError):
    """A model file loads but does not behave as a head-pose model: wrong input or output
    shape, a backend that fails to run it, or non-finite angles."""


class BackendUnavailable(FsanetError):
    """An optional library is not installed."""

    def __init__(self, backend: str, extra: str):
        super().__init__(f"{backend} is not installed; install it with: pip install 'fsanet-edge[{extra}]'")
        self.backend = backend
        self.extra = extra


class ExportError(FsanetError):
    """An export step failed or produced a file that disagrees with its source."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage}: {message}")
        self.stage = stage


class BudgetExceeded(FsanetError):
    """A measured metric broke a limit of the accuracy or latency budget."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI runner's timeout), raised like Ctrl-C so that every cleanup runs."""
