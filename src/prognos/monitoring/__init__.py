"""Monitoring: the reference profile saved at training, drift that tells aging from change, data
quality, and realised and estimated performance from late, censored feedback."""
