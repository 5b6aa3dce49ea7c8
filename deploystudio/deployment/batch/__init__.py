"""Batch jobs: settings, inputs, the detached runner and its workers, records and output."""
