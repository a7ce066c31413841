"""Tasks: one module each, every one an `Env` (see locomotion/envs.py)."""
