"""Generated from proto/tongban/v1 by `make proto`. Do not edit."""
