"""The syncd reference client (``syncref``)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
