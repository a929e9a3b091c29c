"""The model registry, gates and promotion."""
