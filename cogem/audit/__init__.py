"""Audit tools: replay, report, export."""
