"""Clients of the syncd protocol."""
