"""The project's settings, with the sync comparison views as the URL configuration.

servestatic's middleware is async-only: in a WSGI server Django would run every request
through ``async_to_sync`` to call it, which is the cost of async code in a sync server, not
of sync views. The comparison serves no static files, so it goes without, as a sync
deployment serving its files elsewhere (WhiteNoise, the proxy) would.
"""

from config.settings import *  # noqa: F403
from config.settings import MIDDLEWARE

ROOT_URLCONF = "bench.sync_urls"
MIDDLEWARE = [name for name in MIDDLEWARE if not name.startswith("servestatic.")]
