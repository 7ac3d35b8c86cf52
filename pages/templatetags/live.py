"""``{% live_script %}``: makes a page's ``data-live-region`` elements follow the event stream."""

from __future__ import annotations

import json

from django import template
from django.templatetags.static import static
from django.utils.html import format_html

from events.models import Event

register = template.Library()

STREAM_URL = "/api/events"


@register.simple_tag
def live_script(every: float = 0) -> str:
    """The script tag; ``every``: also refresh every that many seconds (0: on events only)."""
    return format_html(
        '<script src="{}" data-stream="{}" data-events="{}" data-every="{}" defer></script>',
        static("pages/live.js"),
        STREAM_URL,
        json.dumps(list(Event.Type.values)),
        every,
    )
