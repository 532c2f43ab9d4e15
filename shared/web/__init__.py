"""HTTP layer: Healthcare-API routing, response builders and the error-to-status table."""
