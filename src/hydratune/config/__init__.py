"""The Hydra boundary: typed specs, their validation, and the command-line shape shared by every stage."""
