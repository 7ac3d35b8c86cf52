"""``python -m tools.mutation MODULE... --tests TEST...``: the mutation score of the modules.

Exits 1 when the share of mutants killed is below ``--fail-under`` (percent), 2 when the tests
fail without any mutant.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from tools.mutation.execute import (
    MIN_TIMEOUT,
    TIMEOUT_FACTOR,
    BaselineFailed,
    Outcome,
    baseline,
    judge,
    workspaces,
)
from tools.mutation.mutants import Mutant, mutants, original

ROOT = Path(__file__).resolve().parents[2]


def _say(line: str = "", *, to: TextIO = sys.stdout) -> None:
    # Line by line as mutants are judged, so that a long run shows its progress.
    to.write(line + "\n")
    to.flush()


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.mutation",
        description="Mutate the modules one change at a time and run the tests against each.",
    )
    parser.add_argument(
        "modules", nargs="+", help="Modules to mutate, as paths from the project's root."
    )
    parser.add_argument(
        "--tests",
        nargs="+",
        required=True,
        help="The tests to run against each mutant: files, folders or pytest node ids.",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="Mutants tested at once, each in a copy of the project (default: the CPU count).",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME",
        help="Test only these mutants, named as in the report (worker/runner.py#12).",
    )
    parser.add_argument(
        "--list", action="store_true", help="List the mutants with their changes; run nothing."
    )
    parser.add_argument(
        "--fail-under",
        type=float,
        default=0.0,
        help="Exit 1 when fewer than this percentage of mutants are killed (default: 0).",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="Also write every outcome to this JSON file."
    )
    arguments = parser.parse_args(argv)
    if arguments.jobs < 1:
        parser.error("--jobs must be 1 or more.")
    for module in arguments.modules:
        if not (ROOT / module).is_file() or not module.endswith(".py"):
            parser.error(f"{module} is not a Python file of the project.")
    return arguments


def _diff(mutant: Mutant, before: str) -> str:
    lines = difflib.unified_diff(before.splitlines(), mutant.source.splitlines(), lineterm="", n=1)
    return "\n".join(list(lines)[2:])


def _summary(outcomes: list[Outcome], modules: Sequence[str]) -> list[str]:
    lines = []
    for path in [*modules, None]:
        mine = [o for o in outcomes if path is None or o.mutant.path == path]
        killed = sum(o.killed for o in mine)
        share = 100.0 * killed / len(mine) if mine else 100.0
        lines.append(
            f"{path or 'all'}: {killed} of {len(mine)} mutants killed ({share:.1f}%), "
            f"{sum(o.how == 'timed out' for o in mine)} by a timeout"
        )
    return lines


def main(argv: Sequence[str]) -> int:
    arguments = _arguments(argv)
    originals = {path: (ROOT / path).read_text() for path in arguments.modules}
    written = {path: original(source) for path, source in originals.items()}
    found = [m for path, source in originals.items() for m in mutants(path, source)]
    if arguments.only is not None:
        found = [m for m in found if m.name in set(arguments.only)]
    if arguments.list:
        for mutant in found:
            _say(f"{mutant.name} line {mutant.line}: {mutant.description}")
        return 0

    started = time.monotonic()
    with workspaces(ROOT, arguments.jobs) as free:
        copy = free.get()
        try:
            seconds = baseline(copy, written, arguments.tests)
        except BaselineFailed as error:
            _say(f"mutation: {error}", to=sys.stderr)
            return 2
        finally:
            free.put(copy)
        timeout = max(MIN_TIMEOUT, TIMEOUT_FACTOR * seconds)
        _say(
            f"{len(found)} mutants; the tests take {seconds:.1f} s without one; "
            f"{arguments.jobs} at a time, each stopped after {timeout:.0f} s"
        )

        def report(outcome: Outcome) -> None:
            mark = "killed  " if outcome.killed else "SURVIVED"
            _say(
                f"{mark} {outcome.mutant.name} line {outcome.mutant.line}: "
                f"{outcome.mutant.description} ({outcome.how}, {outcome.seconds:.1f} s)"
            )

        try:
            outcomes = judge(
                found,
                arguments.tests,
                free=free,
                jobs=arguments.jobs,
                timeout=timeout,
                originals=written,
                report=report,
            )
        except BaselineFailed as error:
            _say(f"mutation: {error}", to=sys.stderr)
            return 2

    survivors = [o.mutant for o in outcomes if not o.killed]
    for mutant in survivors:
        _say(f"\nsurvivor {mutant.name}: {mutant.description}")
        _say(_diff(mutant, written[mutant.path]))
    _say()
    for line in _summary(outcomes, arguments.modules):
        _say(line)
    _say(f"in {time.monotonic() - started:.0f} s")
    if arguments.json is not None:
        arguments.json.write_text(
            json.dumps(
                [
                    {
                        "mutant": o.mutant.name,
                        "line": o.mutant.line,
                        "change": o.mutant.description,
                        "killed": o.killed,
                        "how": o.how,
                        "seconds": round(o.seconds, 2),
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    killed = sum(o.killed for o in outcomes)
    score = 100.0 * killed / len(outcomes) if outcomes else 100.0
    return 1 if score < arguments.fail_under else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
