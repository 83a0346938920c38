"""The wire formats trackyard speaks: one module per vendor, each decoding into canonical events."""
