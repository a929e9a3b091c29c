"""Errors, settings, redaction and alert channels: what every layer above uses."""
