"""learnrecon: learned and classical reconstruction for inverse imaging problems y = A(x) + e."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("learnrecon")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
