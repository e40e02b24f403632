"""WSGI entry point for gunicorn: `gunicorn web.wsgi:app` (settings from $KYSO_CONFIG)."""

import logging

from web import create_app

# Under gunicorn nothing configures logging; send ours (with tracebacks) to stderr.
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

app = create_app()
