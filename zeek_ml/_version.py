"""The package version (one place; ``zeek_ml.__version__`` and the metadata read it)."""

__version__ = "0.1.0"
