"""tamperscan: find manipulated images in large archives and show where they were tampered with."""

__version__ = "0.1.0"
