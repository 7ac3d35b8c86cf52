"""Reports as files: CSV (RFC 4180) and XLSX, written a row at a time.

CSV lines are produced one by one for a streaming response. The XLSX is written by openpyxl in
write-only mode, which keeps no more than the current row in memory, into a temporary file that
the response then streams.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from typing import IO

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from reports.selectors import Report

DURATION_FORMAT = "[h]:mm:ss"  # hours past 24 keep counting, as a total needs
DAY_FORMAT = "yyyy-mm-dd"


def seconds_text(total: timedelta) -> str:
    """Exact seconds, to the microsecond, as text: a float would round long totals."""
    micro = total // timedelta(microseconds=1)
    sign = "-" if micro < 0 else ""
    whole, fraction = divmod(abs(micro), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def hms(total: timedelta) -> str:
    """H:MM:SS with unbounded hours, the fraction of a second cut off."""
    whole = max(0, int(total.total_seconds()))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def header(report: Report) -> list[str]:
    return [*report.query.group_by, "seconds", "duration"]


def filename(report: Report, extension: str) -> str:
    return f"report-{report.query.start}-to-{report.query.end}.{extension}"


# A spreadsheet opening the CSV would run a cell beginning with one of these as a formula; a
# username may begin with "+", "-" or "@". Such text is sent with a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str | date) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


class _Line:
    """A file that hands back what is written to it: csv.writer then yields one line a row."""

    def write(self, text: str) -> str:
        return text


def csv_lines(report: Report) -> Iterator[str]:
    """The report as CSV lines (CRLF, quoted where needed), the header first, a total last."""
    writer = csv.writer(_Line(), dialect="excel")  # the excel dialect is RFC 4180's
    yield writer.writerow(header(report))
    for row in report.rows:
        values = [_text(value) for value in row.key]
        yield writer.writerow([*values, seconds_text(row.total), hms(row.total)])
    if report.query.group_by:
        blanks = [""] * (len(report.query.group_by) - 1)
        yield writer.writerow(["total", *blanks, seconds_text(report.total), hms(report.total)])


def xlsx_file(report: Report) -> IO[bytes]:
    """The report as an XLSX workbook in a temporary file, positioned at its start.

    Durations are real durations (days, formatted [h]:mm:ss), so that a spreadsheet adds them;
    a seconds column keeps the exact figure. The file is deleted when closed.
    """
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Report")
    bold = Font(bold=True)

    def cell(value: object, *, number_format: str | None = None, strong: bool = False) -> object:
        written = WriteOnlyCell(sheet, value=value)  # type: ignore[arg-type]
        if number_format is not None:
            written.number_format = number_format
        if strong:
            written.font = bold
        return written

    sheet.append([cell(name, strong=True) for name in header(report)])
    for row in report.rows:
        keys = [
            cell(value, number_format=DAY_FORMAT) if isinstance(value, date) else cell(value)
            for value in row.key
        ]
        sheet.append(
            [
                *keys,
                cell(row.total.total_seconds()),
                cell(row.total, number_format=DURATION_FORMAT),
            ]
        )
    if report.query.group_by:
        blanks = [cell(None) for _ in report.query.group_by[1:]]
        sheet.append(
            [
                cell("total", strong=True),
                *blanks,
                cell(report.total.total_seconds(), strong=True),
                cell(report.total, number_format=DURATION_FORMAT, strong=True),
            ]
        )
    output = tempfile.TemporaryFile()  # noqa: SIM115  (the response closes it)
    book.save(output)
    output.seek(0)
    return output
