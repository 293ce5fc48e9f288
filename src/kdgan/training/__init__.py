"""The training loop, objectives, EMA, checkpoints and run logging."""
