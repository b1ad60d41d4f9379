"""cotscale's exceptions: problems with its inputs or environment that the user fixes (the message says how).

Its own module so that any module can raise them without importing the config loader (and what that imports).
"""

from __future__ import annotations


class CotscaleError(Exception):
    """A problem with cotscale's inputs (config, files, environment) that the user fixes; the message says how."""


class ConfigError(CotscaleError, ValueError):
    """A configuration problem, worded for the person who edits the YAML."""


class BackendUnavailable(CotscaleError, ImportError):
    """The configured backend's package is not installed (or does not import)."""


class DeviceUnavailable(CotscaleError, RuntimeError):
    """The configured device (a CUDA GPU) is not there."""
