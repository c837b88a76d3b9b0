"""WeChat Pay notification endpoints (to be written)."""
