"""STAC catalogs: static JSON catalogs written under a lock, and offline validation of what is written."""
