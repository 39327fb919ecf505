"""Solvers of the compute contracts geomill ships (contracts/shipped/): pure functions inputs -> outputs."""
