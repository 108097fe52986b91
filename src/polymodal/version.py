"""The package version (a module of its own, so that lower layers need not import the package facade)."""

__version__ = "0.1.0"
