from django.apps import AppConfig


class TimesheetsConfig(AppConfig):
    name = "timesheets"
    verbose_name = "Timesheets"

    def ready(self) -> None:
        from timesheets import checks  # noqa: F401  (registers the system checks)
