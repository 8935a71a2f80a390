"""Experiment runners: studies behind the README's tables that need checkpoints or data the repository does not
bundle (leave-one-speaker-out folds, FSDD, the Sweet Home 3D furniture) or hours of compute. ``--quick`` skips
with one line when the input is absent."""
