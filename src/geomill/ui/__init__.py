"""The web console at /ui (docs/console.md): Jinja2 pages over the JSON API, the vendored OpenLayers map."""
