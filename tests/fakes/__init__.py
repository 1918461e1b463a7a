"""Loopback HTTP servers that speak real market-data wire formats, for tests that drive the real SDKs offline."""
