"""ASGI entry point: Django, with the periodic jobs run by the ASGI lifespan."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_asgi_application()

from events.asgi import cuttable_streams  # noqa: E402
from worker.lifespan import with_worker  # noqa: E402  (Django must be set up first)

application = with_worker(cuttable_streams(django_application))
