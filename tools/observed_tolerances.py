"""Record the largest error the test suite observes for each row of the tolerance table.

    .venv/bin/python tools/observed_tolerances.py            # runs the suite once (~7 min), rewrites
                                                           # the OBSERVED block of compiler/tolerances.py

Every ``assert_close`` appends the comparison's largest absolute error and its largest share of
the row's bound when ``RNNC_TOLERANCE_LOG`` names a file; this runs ``pytest`` with it set,
then writes, beside each row, the largest error seen, how much of the bound it used, how many
comparisons, and the CPU it ran on -- so a loose row shows up as one (a share far below 1).
Rows no test exercises here (GPU-only ones on a machine without a GPU) say so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "compiler" / "tolerances.py"
BEGIN, END = "# --- observed: written by tools/observed_tolerances.py", "# --- end observed"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "tol.jsonl"
        env = {**os.environ, "RNNC_TOLERANCE_LOG": str(log)}
        # test_tolerances.py checks the block this writes: it runs against the new block afterwards
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                                "--deselect", "tests/test_tolerances.py"], cwd=ROOT, env=env)
        rows: dict[tuple[str, str], dict] = {}
        for line in log.read_text().splitlines() if log.exists() else []:
            rec = json.loads(line)
            key = tuple(rec["row"])
            cur = rows.setdefault(key, {"abs": 0.0, "share": 0.0, "n": 0})
            cur["abs"], cur["share"], cur["n"] = max(cur["abs"], rec["abs"]), max(cur["share"], rec["share"]), \
                cur["n"] + 1
    from rnnc.tolerances import TOLERANCES

    lines = [BEGIN, f"#: largest error the test suite saw per row (abs, share of the bound, comparisons); "
             f"{cpu_model()}, pytest exit {code}",
             "OBSERVED: dict[tuple[str, str], tuple[float, float, int] | None] = {"]
    for key in TOLERANCES:
        seen = rows.get(key)
        value = "None,  # no test exercises this row on this machine" if seen is None else \
            f"({seen['abs']:.3g}, {seen['share']:.3g}, {seen['n']}),"
        lines.append(f"    {key!r}: {value}")
    lines += ["}", END]
    text = TABLE.read_text()
    block = "\n".join(lines)
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        marker = "\n\n#: set to a file path"
        text = text.replace(marker, "\n\n" + block + marker, 1)
    TABLE.write_text(text)
    print(f"wrote the observed errors of {len(rows)} rows into {TABLE}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
