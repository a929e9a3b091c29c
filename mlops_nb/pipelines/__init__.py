"""Notebooks run headless: parameters, runs, executors, project scaffolding."""
