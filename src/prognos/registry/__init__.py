"""Registry: the MLflow pyfunc bundle, registration, the promotion gate, aliases and rollback."""
