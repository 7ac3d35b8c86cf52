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


class CorrectionRefused(TimesheetsError):
    """A change to recorded time that would break the time model: the message says why."""


class SegmentOverlap(CorrectionRefused):
    """A run would overlap another: ``timesheet_id`` and ``segment_id`` name the other one."""

    def __init__(self, message: str, *, timesheet_id: int, segment_id: int) -> None:
        super().__init__(message)
        self.timesheet_id = timesheet_id
        self.segment_id = segment_id


class DatabaseBusy(Exception):
    """A job's transaction gave up waiting for a lock that others held past the job's bound.

    Not an error of the data: what the job would have done is still to do, and its next run does
    it (an accrual moves every watermark from where it is).
    """

    def __init__(self, *, waited_s: float) -> None:
        super().__init__(f"the database stayed busy with other writers for {waited_s:g} s")
        self.waited_s = waited_s
