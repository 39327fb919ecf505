"""Use cases every face calls (CLI, HTTP API, later the web console and OGC API): submit, status, listing,
operations, health, API keys. Faces parse input, call these, and render; errors are domain errors."""
