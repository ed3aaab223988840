"""Training, evaluation and export for stream-ser (needs the `train` extra)."""
