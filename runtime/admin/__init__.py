"""The admin HTTP API (DESIGN §7)."""
