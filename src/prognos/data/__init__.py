"""Data layer: sources (``KIND:PATH``), the simulator, validation with quarantine, and labels."""
