"""Persistence: the data model, the database, the raw-message store, queries."""
