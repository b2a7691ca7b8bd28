"""Training: losses, optimizers and schedules, the loops (engine) and fit() (trainer)."""
