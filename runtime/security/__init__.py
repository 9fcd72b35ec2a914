"""Security of a node's edges: bearer tokens, request signing, TLS, secret headers (README,
Security)."""
