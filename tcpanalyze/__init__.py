"""tcpanalyze: what happened to these TCP connections, on both ends, and what is wrong."""

__version__ = "0.1.0"
