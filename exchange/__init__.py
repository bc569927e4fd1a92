"""Tongban exchange: the gRPC hub, its services, routing, configuration and CLI.

The shared domain it builds on (errors, subject keys, records) lives in `domain/`.
"""
