"""Tongban's shared domain: the error tree, subject keys, records and sync job types.

Pure values and rules with no I/O and no transport: `signing/`, `certstore/`,
`adapters/` and the hub (`exchange/`) all import from here, never the other way round.
"""
