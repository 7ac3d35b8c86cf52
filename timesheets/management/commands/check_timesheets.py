"""``manage.py check_timesheets``: verify every invariant of the time model, exactly."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from timesheets.integrity import RULES, check


class Command(BaseCommand):
    help = (
        "Check every invariant of the time model for every timesheet, in one consistent "
        "snapshot: imputed time equals the runs' sum, nothing lies in the future of the "
        "database's clock, no runs overlap, no one runs more than the limit. Prints the counts "
        "and the first offenders; exits 1 on any violation."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--examples",
            type=int,
            default=20,
            help="How many offenders to print at most (default: 20).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the report as one JSON object."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = check(max_examples=max(0, options["examples"]))
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            self.stdout.write(
                f"Checked {report.timesheets} timesheets ({report.running} running) and "
                f"{report.segments} runs at {report.checked_at.isoformat()}."
            )
            for rule in RULES:
                self.stdout.write(f"  {rule}: {report.counts[rule]}")
            for example in report.examples:
                self.stdout.write(f"  - {example}")
        if not report.ok:
            raise CommandError(
                f"{report.violations} violations of the time model's invariants.", returncode=1
            )
        if not options["json"]:
            self.stdout.write("Every invariant holds.")
