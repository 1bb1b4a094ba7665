"""zeek-ml: a learned intrusion detector for Zeek conn logs."""

__version__ = "0.1.0"
