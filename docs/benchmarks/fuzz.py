"""The fuzz, at scale: `AFG_FUZZ_EXAMPLES=2000 pytest tests/safety/test_fuzz.py
--hypothesis-show-statistics` (CI runs 80 examples per target): hostile YAML configs, damaged
tar headers of a bare-URL stream, tampered saved-recognizer folders and out-of-range CLI values;
every example must end in the correct result or one of the package's own errors. Parses
Hypothesis's statistics per target; writes fuzz.json beside this script and prints the table
docs/benchmarks.md shows.

    python docs/benchmarks/fuzz.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from figures import machine, main, markdown

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = 2000
COUNTS = re.compile(  # "5 passing, 0 failing, and 0 invalid test cases" (older: "examples")
    r"(\d+) passing(?: examples?)?, (\d+) failing(?: examples?)?,(?: and)? (\d+) invalid"
)


def measure(runs: int) -> dict:
    command = [sys.executable, "-m", "pytest", "tests/safety/test_fuzz.py", "-p", "no:randomly"]
    command += ["-n", "0", "-q", "--hypothesis-show-statistics"]
    env = {**os.environ, "AFG_FUZZ_EXAMPLES": str(EXAMPLES)}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    targets, name = {}, None
    for line in done.stdout.splitlines():
        if line.startswith("tests/safety/test_fuzz.py::") and line.rstrip().endswith(":"):
            name = line.split("::", 1)[1].rstrip(":")
        elif (found := COUNTS.search(line)) and name:
            passing, failing, invalid = map(int, found.groups())
            entry = targets.setdefault(name, {"passing": 0, "failing": 0, "invalid": 0})
            for key, value in zip(entry, (passing, failing, invalid), strict=True):
                entry[key] += value
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-500:]
    return {"machine": machine(), "examples": EXAMPLES, "pytest": summary, "targets": targets}


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    rows = [
        [f"`{name}`", f"{t['passing']:,}", t["failing"], t["invalid"]]
        for name, t in result["targets"].items()
    ]
    rows.append(["pytest", result["pytest"], "", ""])
    return markdown(
        ["target", "examples passing", "failing", "invalid (rejected by the strategy)"], rows
    )


if __name__ == "__main__":
    main(__file__, measure, table, runs=1)
