"""The OpenAI-compatible HTTP service (`coe serve`)."""
