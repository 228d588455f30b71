"""Sweeps: sweep files and their points, running the points, the results tables and figures."""
