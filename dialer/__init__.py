"""Dialer: a self-hosted outbound calling engine (API service and the domain code it shares)."""
