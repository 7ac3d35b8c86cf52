"""Every error the timesheets domain raises on purpose. Each message says what to do next."""


class TimesheetsError(Exception):
    """A request the domain refuses; the message is meant for the person who made it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProjectInactive(TimesheetsError):
    """Time cannot be recorded on an archived project."""


class ProjectCodeTaken(TimesheetsError):
    """Project codes are unique."""
