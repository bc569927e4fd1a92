"""Tongban adapters package."""
