"""Caller identity (mTLS or dev tokens), the access policy, and the dev CA."""
