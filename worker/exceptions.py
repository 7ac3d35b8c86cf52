"""Every error the worker raises on purpose."""


class WorkerError(Exception):
    """The periodic-job runner cannot do what was asked."""


class JobConfigurationError(WorkerError):
    """A job is declared in a way the runner cannot schedule."""
