"""Task handlers by domain; each takes (params, context) and returns a result model."""
