"""The files: CSV read back with the csv module, XLSX opened with openpyxl."""

from __future__ import annotations

import csv
import io
import zoneinfo
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from openpyxl import load_workbook

from reports.exports import csv_lines, filename, hms, seconds_text, xlsx_file
from reports.selectors import Report, ReportQuery, report_compute
from tests.reports.conftest import AddRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settings_limits")]

UTC_ZONE = zoneinfo.ZoneInfo("UTC")
NOW = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def report(alice: User, add_run: AddRun) -> Report:
    odd = User.objects.create_user(username='o"dd, name')  # quoting is exercised
    add_run(alice, datetime(2026, 2, 2, 9, tzinfo=UTC), datetime(2026, 2, 2, 10, tzinfo=UTC))
    add_run(
        alice,
        datetime(2026, 2, 3, 9, tzinfo=UTC),
        datetime(2026, 2, 4, 12, 0, 1, 500_000, tzinfo=UTC),
    )
    add_run(odd, datetime(2026, 2, 3, 9, tzinfo=UTC), datetime(2026, 2, 3, 9, 30, tzinfo=UTC))
    query = ReportQuery(date(2026, 2, 1), date(2026, 2, 28), UTC_ZONE, group_by=("user", "day"))
    return report_compute(query, now=NOW)


def test_durations_as_text() -> None:
    assert seconds_text(timedelta(hours=30, microseconds=7)) == "108000.000007"
    assert hms(timedelta(hours=30, minutes=2, seconds=3, microseconds=999_999)) == "30:02:03"
    assert hms(timedelta(0)) == "0:00:00"


def test_the_csv_reads_back_with_its_totals(report: Report) -> None:
    text = "".join(csv_lines(report))

    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")  # RFC 4180: every line ends with CRLF
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["user", "day", "seconds", "duration"]
    body, total = rows[1:-1], rows[-1]
    assert body == [
        ["alice", "2026-02-02", "3600.000000", "1:00:00"],
        ["alice", "2026-02-03", "54000.000000", "15:00:00"],
        ["alice", "2026-02-04", "43201.500000", "12:00:01"],
        ['o"dd, name', "2026-02-03", "1800.000000", "0:30:00"],
    ]
    assert total == ["total", "", "102601.500000", "28:30:01"]
    assert sum(float(row[2]) for row in body) == float(total[2])


def test_the_xlsx_opens_with_durations_that_add_up(report: Report) -> None:
    with xlsx_file(report) as file:
        book = load_workbook(io.BytesIO(file.read()))
    sheet = book["Report"]
    rows = list(sheet.iter_rows(values_only=True))

    assert rows[0] == ("user", "day", "seconds", "duration")
    body, total = rows[1:-1], rows[-1]
    assert [row[0] for row in body] == ["alice", "alice", "alice", 'o"dd, name']
    assert body[0][1] == datetime(2026, 2, 2)  # a real date cell
    assert [row[2] for row in body] == [3600.0, 54000.0, 43201.5, 1800.0]
    durations = [row[3] for row in body if isinstance(row[3], timedelta)]
    assert len(durations) == len(body)
    # A spreadsheet stores days as a double: equal to well under a millisecond.
    assert abs(durations[2] - timedelta(seconds=43201.5)) < timedelta(milliseconds=1)
    assert total[0] == "total"
    assert total[2] == 102601.5
    grand = total[3]
    assert isinstance(grand, timedelta)
    assert abs(grand - sum(durations, timedelta(0))) < timedelta(milliseconds=1)
    assert sheet.cell(row=2, column=4).number_format == "[h]:mm:ss"


def test_an_ungrouped_report_is_one_line(alice: User, add_run: AddRun) -> None:
    add_run(alice, datetime(2026, 2, 2, 9, tzinfo=UTC), datetime(2026, 2, 2, 10, tzinfo=UTC))
    report = report_compute(ReportQuery(date(2026, 2, 1), date(2026, 2, 2), UTC_ZONE), now=NOW)

    rows = list(csv.reader(io.StringIO("".join(csv_lines(report)), newline="")))

    assert rows == [["seconds", "duration"], ["3600.000000", "1:00:00"]]
    assert filename(report, "csv") == "report-2026-02-01-to-2026-02-02.csv"


def test_text_a_spreadsheet_would_run_is_defused(add_run: AddRun) -> None:
    sneaky = User.objects.create_user(username="+cmd@x")
    add_run(sneaky, datetime(2026, 2, 2, 9, tzinfo=UTC), datetime(2026, 2, 2, 10, tzinfo=UTC))
    query = ReportQuery(date(2026, 2, 1), date(2026, 2, 2), UTC_ZONE, group_by=("user",))

    rows = list(csv.reader(io.StringIO("".join(csv_lines(report_compute(query, now=NOW))))))

    assert rows[1][0] == "'+cmd@x"
