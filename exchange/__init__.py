"""Tongban exchange: the gRPC hub, its services, routing, configuration and CLI.

This package's top level imports nothing heavy: `signing/`, `certstore/` and
`adapters/` use its pure modules (`errors`, `subjects`) without pulling in gRPC.
"""
