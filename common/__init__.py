"""Shared plumbing of nnq-mc-study: data, models, training, evaluation, runs, reports, CLI."""
