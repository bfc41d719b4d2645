"""Command-line entry points: the only place that reads Hydra configs and seeds globally."""
