"""megamixer: chunked multi-epoch galaxy fitting for imaging surveys."""

__version__ = "0.1.0"
