"""``python -m harness.commands.grid``: list the grid's cells, write its catalog and data, check the
recording, or run it (``python -m harness.commands.grid run [pytest args]``, as ./dev grid)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness.commands.grid.runner import read_recording, recording_problems, run
from harness.generate.grid_cells import GRID_DIR, cells, data_sha256, generate, write_grid


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        return run(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m harness.commands.grid",
        description="The stress grid: list its cells, write its catalog and data, or run it "
                    "(`python -m harness.commands.grid run [pytest args]`, as ./dev grid).")
    parser.add_argument("--write-data", nargs="?", const=str(GRID_DIR), metavar="DIR",
                        help="write DIR/catalog.yaml and DIR/data/ (default build/grid)")
    parser.add_argument("--check", action="store_true",
                        help="check the recording against the regenerated grid")
    args = parser.parse_args(argv)
    if args.write_data:
        hashes = write_grid(args.write_data)
        print(f"wrote {len(hashes)} grid cases to {args.write_data}")
        return 0
    if args.check:
        hashes = {c.id: data_sha256(generate(c)[0]) for c in cells()}
        problems = recording_problems(read_recording(), hashes)
        print("\n".join(problems) or f"the recording fits all {len(hashes)} grid cases")
        return 1 if problems else 0
    for c in cells():
        print(f"{c.id:48s} seed={c.seed:<11d} {c.spec.formula}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
