"""The reference panel: kauthd's two-page web login and self-service."""
