"""Azure ML endpoints (online and batch) through azure-ai-ml: errors, records, YAML export."""
