"""Kith: a self-hostable, federated social platform."""

__version__ = "0.1.0"
