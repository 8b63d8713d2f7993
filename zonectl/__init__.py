"""zonectl: security zones encoded in IPv6 pod addresses."""
__version__ = "0.1.0"
