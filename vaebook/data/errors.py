"""Exceptions raised by the data layer.

Every message names the file or value at fault, what was expected, and how to fix it.
All derive from :class:`DataError`, so callers can catch one type.
"""
from __future__ import annotations

import numbers

ENV_HINT = (
    "Pass root=... or set the VAEBOOK_DATA environment variable to the folder that holds "
    "MNIST/raw and celeba/ (see shared/data/SOURCES.md for where each file comes from)."
)


class DataError(Exception):
    """Base class for every data-layer error."""


class MissingDataError(DataError, FileNotFoundError):
    """A data root, folder or file is absent."""


class ChecksumError(DataError):
    """A file's MD5 differs from the published one."""


class CorruptFileError(DataError):
    """A file exists and may pass size checks but cannot be parsed or decoded."""


class EmptyImageFolderError(DataError):
    """An image folder (or the requested split of it) holds no usable image."""


class InvalidArgumentError(DataError, ValueError):
    """An argument of a data loader has a value it cannot use (a size of 0, an infinite noise variance …)."""


class UnknownNameError(DataError, ValueError):
    """An unknown dataset name, split, noise pattern or option value."""


def check_size(where: str, size) -> None:
    """``size`` (the output side in pixels) must be a positive integer."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0:
        raise InvalidArgumentError(f"{where}: argument 'size' = {size!r}; expected a positive integer number of pixels "
                                   "(64 for CelebA-64, 128 for CelebA-HQ-128). Fix: pass e.g. size=64.")


def unknown(kind: str, value, allowed) -> UnknownNameError:
    """Build the error for a value outside a fixed set of names."""
    allowed = ", ".join(repr(a) for a in allowed)
    return UnknownNameError(f"unknown {kind} {value!r}; expected one of: {allowed}.")
