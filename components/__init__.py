"""Reusable Streamlit widgets and cached services; they take and return plain data."""
