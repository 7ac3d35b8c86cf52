"""Every error the worker raises on purpose."""


class WorkerError(Exception):
    """The periodic-job runner cannot do what was asked."""


class JobConfigurationError(WorkerError):
    """A job is declared in a way the runner cannot schedule."""


class JobDeferred(WorkerError):
    """A run could not do its work now, through no fault of its own; the next run does it.

    The runner reports it as a warning, not as a failure: nothing is lost and nobody need act,
    unless it goes on (then the usual "still failing" summary says so).
    """
