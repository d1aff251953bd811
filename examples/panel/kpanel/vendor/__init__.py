"""Third-party code kept as released (see README.md here)."""
