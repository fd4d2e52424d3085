"""Models: members (trees, sequence network, forest baseline), ensemble, calibration, intervals."""
