"""Every error the webhooks raise on purpose. Each message says what to do next."""


class WebhooksError(Exception):
    """A request about webhooks that is refused; the message is meant for its sender."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UrlRefused(WebhooksError):
    """The URL cannot be a webhook endpoint: its scheme, or where its host resolves to."""


class EventTypesRefused(WebhooksError):
    """A subscription names an event type that does not exist."""


class NotAllowed(WebhooksError):
    """The caller may not do this (everyone's events without the permission to see them)."""
