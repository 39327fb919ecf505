"""geomill: raw geospatial files in, analysis-ready products out."""

__version__ = "0.1.0"
