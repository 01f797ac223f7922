"""The Section-6 shared scale under its old name: every name of :mod:`vaebook.experiments._section6` (the package
that holds it, one idea per file), kept for modules that still import ``_scale6``."""
from __future__ import annotations

from vaebook.experiments._section6 import *  # noqa: F401,F403 - the old import path
from vaebook.experiments._section6 import __all__  # noqa: F401
