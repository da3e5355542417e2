"""Bytes in, typed results out: no storage, no network."""
