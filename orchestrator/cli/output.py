"""What every `memlaw` command shares: the exit code for bad input, and how problems reach stderr
(a file's validation errors, and the damaged files of an experiment's record log)."""

from __future__ import annotations

import sys

from trainables.schema import ConfigError


EXIT_BAD_INPUT = 2
#: The experiment's storage stopped taking writes (full, read-only, forbidden): resumable once fixed.
EXIT_STORAGE = 3
#: Most problems printed for one file; the rest are counted (a 1 MiB file may hold thousands).
MAX_PROBLEMS_SHOWN = 50


def print_error(source: str, err: ConfigError) -> None:
    print(f"error: {source} is not valid:", file=sys.stderr)
    for problem in err.problems[:MAX_PROBLEMS_SHOWN]:
        print(f"  - {problem}", file=sys.stderr)
    if len(err.problems) > MAX_PROBLEMS_SHOWN:
        print(f"  ... and {len(err.problems) - MAX_PROBLEMS_SHOWN} more problems", file=sys.stderr)


def report_damage(where: str, damaged: list, strict: bool) -> bool:
    """One line with the count, then one per file and its reason, on stderr. True when the command
    must stop (--strict: exit 2). `damaged`: record_log.Damage objects or their dicts."""
    rows = [d if isinstance(d, dict) else d.to_dict() for d in damaged]
    if not rows:
        return False
    lost = [r for r in rows if r["kind"] != "stray"]
    strays = len(rows) - len(lost)
    counts = ([f"{len(lost)} damaged file{'s' * (len(lost) != 1)} left out (records in them are not counted)"]
              if lost else []) + ([f"{strays} stray file{'s' * (strays != 1)} ignored"] if strays else [])
    head = "error" if strict else "warning"
    print(f"{head}: {where}: {'; '.join(counts)}" + (" (--strict)" if strict else ""), file=sys.stderr)
    for r in rows:
        print(f"  {r['name']}: {r['reason']}", file=sys.stderr)
    return strict
