"""The package version, in one place (pyproject reads it; run folders and exports record it)."""

__version__ = "0.1.0"
