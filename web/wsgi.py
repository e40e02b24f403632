"""WSGI entry point for gunicorn: `gunicorn web.wsgi:app` (settings from $KYSO_CONFIG)."""

import logging

from web import create_app
from web.ocsp import create_ocsp_app

# Under gunicorn nothing configures logging; send ours (with tracebacks) to stderr.
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

app = create_app()
# The OCSP responder alone (`gunicorn web.wsgi:ocsp_app`, what `kyso ocsp serve` runs).
ocsp_app = create_ocsp_app(app.config["KYSO_SETTINGS"], app.extensions["kyso"])
# gunicorn imports this module in each worker (no --preload): background work starts per worker.
app.extensions["kyso"].start_background()
