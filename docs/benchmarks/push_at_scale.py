"""The resumable push at scale (`tests/push_bench.py`): 5,000 random files of 4 kB pushed to the
loopback Hub in commits of 100, SIGKILL once half of the commits are in, then the same push
again to the end, beside the same push uninterrupted; `--runs` times. Per run: the file contents
the Hub received over the corpus, the bytes on the wire over the uninterrupted push's, whether
the repo ends byte-identical, and the seconds. Writes push_at_scale.json beside this script and
prints the table that docs/benchmarks.md shows.

    python docs/benchmarks/push_at_scale.py [--runs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

from figures import machine, main, markdown, per_run

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests/ helpers
from tests.push_bench import measure as push  # noqa: E402

FILES, SIZE = 5000, 4096


def measure(runs: int) -> dict:
    pushes = [push(FILES, SIZE) for _ in range(runs)]
    return {"machine": machine(), "files": FILES, "file_bytes": SIZE, "runs": pushes}


def table(result: dict) -> str:
    """The markdown table of a result (what docs/benchmarks.md carries)."""
    runs = result["runs"]

    def each(key: str, form: str = "{:.3f}") -> str:
        return per_run((run[key] for run in runs), form)

    rows = [
        [
            "killed after commit (of)",
            " / ".join(f"{r['killed_at_commit']} ({r['commits']})" for r in runs),
            "",
        ],
        ["file contents received / the corpus", each("content_ratio"), "1.000x"],
        [
            "bytes on the wire / the same push uninterrupted",
            each("wire_ratio_vs_uninterrupted"),
            "<= 1.05x",
        ],
        ["bytes on the wire / the corpus (base64 inline, loopback Hub)", each("wire_ratio"), ""],
        [
            "repo byte-identical to the corpus",
            " / ".join("yes" if r["repo_identical"] else "NO" for r in runs),
            "yes",
        ],
        ["seconds, both pushes and the resume", each("seconds", "{:.1f}"), ""],
    ]
    return markdown(["figure", "runs", "target"], rows)


if __name__ == "__main__":
    main(__file__, measure, table)
