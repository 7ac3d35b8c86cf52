"""System checks: configuration problems are reported by ``manage.py check`` and at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register("security", deploy=False)
def development_secret_key(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.SECRET_KEY != settings.DEVELOPMENT_SECRET_KEY:
        return []
    return [
        Warning(
            "SECRET_KEY is the public development key: anyone can forge sessions.",
            hint="Set SECRET_KEY in the environment before serving anyone but yourself.",
            id="timesheets.W001",
        )
    ]
