"""Composition root: settings, wiring and the kyso command line."""
