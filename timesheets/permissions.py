"""The model permissions that grant powers over other people's data, as the admin grants them.

The API checks these, never ``is_staff`` alone: ``is_staff`` only lets a person into the admin
site, where the same permissions then decide what they may do. A superuser holds them all.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

ADD_PROJECT = "timesheets.add_project"  # create projects
VIEW_TIMESHEET = "timesheets.view_timesheet"  # read anyone's timesheets, runs and reports
CHANGE_TIMESHEET = "timesheets.change_timesheet"  # correct anyone's runs (and read them)
RUN_WORKER = "timesheets.run_worker"  # see and start the periodic-job runner

# What ``GET /api/me`` reports, in this order.
API_PERMISSIONS = (ADD_PROJECT, VIEW_TIMESHEET, CHANGE_TIMESHEET, RUN_WORKER)


async def amay(user: User | AnonymousUser, permission: str) -> bool:
    """Whether the person holds the permission (directly, through a group, or as superuser)."""
    return bool(user.is_active and await user.ahas_perm(permission))


def may(user: User | AnonymousUser, permission: str) -> bool:
    """Whether the person holds the permission, from synchronous code (the API's views)."""
    return bool(user.is_active and user.has_perm(permission))


def may_read_others(user: User | AnonymousUser) -> bool:
    """Whether the person may read anyone's timesheets: as in the admin, the permission to
    change them includes the permission to view them."""
    return may(user, VIEW_TIMESHEET) or may(user, CHANGE_TIMESHEET)


def held(user: User | AnonymousUser) -> list[str]:
    """The API's permissions the person holds."""
    return [permission for permission in API_PERMISSIONS if may(user, permission)]
