"""Serving: the HTTP API and page (facemask.serve.app), started by ``facemask serve``."""
