"""Clients for the services a transfer talks to: Fathom (download) and the uploaders."""
