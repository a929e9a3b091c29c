"""Rollout strategies and the scoring service."""
