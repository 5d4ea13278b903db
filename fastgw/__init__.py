"""fastgw: a strict, fast API gateway for HTTP services."""

__version__ = "0.1.0"
