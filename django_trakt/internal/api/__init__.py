"""Trakt's API: the transport, the OAuth and device endpoints, token answers."""
