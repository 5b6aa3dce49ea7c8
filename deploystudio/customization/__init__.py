"""Customize inference: wrap and re-log a model, or a scoring script and its environment."""
