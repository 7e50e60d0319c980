"""Observability: what the running system says about itself (health, periodic runs)."""
