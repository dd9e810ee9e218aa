"""One small exception hierarchy; the CLI maps each class to an exit code."""

from __future__ import annotations


class FsanetError(Exception):
    """Base class of every error the toolkit raises on purpose."""

    exit_code = 2


class DataError(FsanetError):
    """A data file or folder is missing, unreadable or malformed."""


class WeightsError(FsanetError):
    """A weights file does not match the architecture it claims to hold."""


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
