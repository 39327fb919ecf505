"""The runtime: worker loop, process pool with lease heartbeats and time limits, the janitor, shutdown."""
