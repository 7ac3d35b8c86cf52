"""ASGI entry point: Django, with the periodic jobs run by the ASGI lifespan.

The API and the probes are served by ``ApiHandler`` (config/api_handler.py), whose middleware
never hops to a thread; the admin and the pages by Django's full stack. Both run each request's
synchronous work on a thread lent to it (config/threads.py).
"""

import os

import django
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application() does

from config.api_handler import ApiHandler, serves  # noqa: E402  (Django must be set up first)
from config.threads import LendsThreads  # noqa: E402
from events.asgi import cuttable_streams  # noqa: E402
from worker.lifespan import Receive, Scope, Send, with_worker  # noqa: E402


class SiteHandler(LendsThreads, ASGIHandler):
    """Django's full stack: the pages and the admin."""


django_application = SiteHandler()
api_application = ApiHandler()


async def route(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and serves(scope["path"].removeprefix(scope.get("root_path", ""))):
        await api_application(scope, receive, send)
    else:
        await django_application(scope, receive, send)


application = with_worker(cuttable_streams(route))
