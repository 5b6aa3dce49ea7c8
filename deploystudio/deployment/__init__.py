"""Deployment targets (local processes, Azure ML), their records and the store that keeps them."""
