"""Where runs go: the embedded MLflow SQLite store and the backends that write a journal to a store."""
