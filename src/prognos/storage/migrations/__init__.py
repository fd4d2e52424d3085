"""Alembic migrations of the prediction service's schema; run them with ``Database.upgrade()``."""
