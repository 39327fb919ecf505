"""Test-only plugins, loaded by worker processes through GEOMILL_PLUGINS (the extension seam)."""
