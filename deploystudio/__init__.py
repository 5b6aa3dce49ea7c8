"""Deploy Studio domain package: registry, inspection, prediction and deployment logic.

Never imports Streamlit, so the CLI, tests, benchmarks and model servers share it.
"""

__version__ = "0.1.0"
