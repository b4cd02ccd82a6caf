"""Evaluation: rollouts, normalized scores, and aggregate statistics with honest uncertainty."""
