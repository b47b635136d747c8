"""Persistence of volumes and migrations (SQLite by default)."""
