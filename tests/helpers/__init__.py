"""Shared test helpers (fault injection, real databases of our own, load scripts)."""
