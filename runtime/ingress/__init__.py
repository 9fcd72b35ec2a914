"""HTTP ingress with Restate's paths and status codes (DESIGN §7)."""
