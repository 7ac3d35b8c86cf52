"""ASGI entry point: Django's application inside a lifespan handler."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_asgi_application()

from worker.lifespan import Lifespan  # noqa: E402  (Django must be set up first)

application = Lifespan(django_application)
