"""Helpers for testing code that uses leadscore (and leadscore's own tests)."""
