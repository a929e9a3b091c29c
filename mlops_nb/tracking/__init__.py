"""Runs: the journal, the sync process, the kernel-side recorder, capture, reproduce and the live views."""
