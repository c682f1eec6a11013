"""Stage entry points: one module per stage, each ``python -m pipelines.<stage>``."""
