"""Exceptions of the :mod:`drift` package: one base class, subclasses carrying their context.

:class:`DriftError` derives from :class:`infertap.logger.errors.InfertapError` so that callers can catch every error
raised on purpose by infertap with one clause.
"""

from __future__ import annotations

from infertap.logger.errors import InfertapError


class DriftError(InfertapError):
    """Base class of every error raised on purpose by :mod:`drift`."""


class ConfigError(DriftError):
    """A drift configuration, feature map or command-line option is invalid."""


class DataError(DriftError):
    """Input data is unusable: a missing column, a non-finite value where none is allowed, a wrong shape.

    Attributes:
        feature: the feature or column at fault, ``""`` when the fault is not specific to one.
    """

    def __init__(self, message: str, *, feature: str = "") -> None:
        super().__init__(f"{feature}: {message}" if feature else message)
        self.feature = feature


class BaselineError(DriftError):
    """A baseline artifact cannot be read, is of another format version, or does not match the data.

    Raised too when a baseline of another model or model version is applied to a window.
    """


class EmptyWindowError(DataError):
    """A window (or one arm of a canary comparison) holds no usable rows for a feature or at all."""
