"""Profiles, drift, performance estimation and their widgets."""
