import locomotion  # noqa: F401  (sets XLA flags before jax starts)
