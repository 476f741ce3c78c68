"""The virtual rack. Only `hil lab ...` imports this package; the harness never does."""
