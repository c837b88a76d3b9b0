"""Alipay notification endpoints (to be written)."""
