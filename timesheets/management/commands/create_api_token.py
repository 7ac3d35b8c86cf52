"""``manage.py create_api_token <username>``: print a new API token, once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from timesheets.services import api_token_create

MAX_DAYS = 36_500  # a hundred years is "does not expire"; beyond that dates overflow
MAX_NAME_LENGTH = 100  # characters, as ApiToken.name holds


def _text(value: str, argument: str) -> str:
    # Bytes that are not UTF-8 reach argv as lone surrogates, which no database can store;
    # PostgreSQL refuses NUL as well.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CommandError(f"{argument} {value!r} is not valid UTF-8 text.") from None
    if "\x00" in value:
        raise CommandError(f"{argument} must not contain NUL characters.")
    return value


class Command(BaseCommand):
    help = "Create an API token for a user and print it. Only its digest is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="Whose token it is: an existing user's name.")
        parser.add_argument("--name", default="", help="What the token is for.")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="Days until the token stops working (default: never).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = _text(options["username"], "The username")
        name = _text(options["name"], "--name")
        if len(name) > MAX_NAME_LENGTH:
            raise CommandError(f"--name must be at most {MAX_NAME_LENGTH} characters long.")
        days: int | None = options["expires_in_days"]
        if days is not None and not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--expires-in-days must be between 1 and {MAX_DAYS}.")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(
                f"No user named {username!r}. Create one first, e.g. with "
                "`python manage.py createsuperuser`."
            )
        now = timezone.now()
        issued = api_token_create(
            user=user,
            name=name,
            expires_at=now + timedelta(days=days) if days is not None else None,
            now=now,
        )
        # The token alone goes to stdout, so that TOKEN=$(manage.py create_api_token …) works.
        self.stdout.write(issued.secret)
        self.stderr.write(f"Token {issued.token.prefix}… created for {username}; it is shown once.")
