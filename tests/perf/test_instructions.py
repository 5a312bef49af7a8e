"""Instructions per `/predict` stay within 10 % of a committed baseline.

The release server runs under valgrind's callgrind twice, WARM and WARM +
REQUESTS requests (bench/request_instructions.py, the method of
bench/instructions.sh); the difference per request is nearly deterministic
for a given build and request mix (two runs differ by 1-2 %: the runtime's
wake-ups and timers), so this check is not timed, and its 10 % margin is far
above that noise. The mixes
come from the committed tests/data/sample.csv: `short` (Subject lines) and
`corpus` (whole messages).

When a change makes requests cheaper, lower the baseline in the same commit
(the figures are printed in the run's closing "figures" section), so the
10 % margin keeps meaning 10 %:

    NBSERVE_PERF_WRITE_BASELINE=1 scripts/test-perf.sh
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import request_instructions  # noqa: E402

BASELINE = Path(__file__).with_name("baseline.json")
DATA = ROOT / "tests" / "data" / "sample.csv"
WARM, REQUESTS = 50, 300
# Growth allowed over the baseline before the check fails.
TOLERANCE = 1.10


def baseline() -> dict:
    return json.loads(BASELINE.read_text())


@pytest.mark.parametrize("mix", request_instructions.MIXES)
def test_predict_instructions_within_ten_percent_of_baseline(release_bin, mix, figures, tmp_path):
    result = request_instructions.measure(
        "nbserve", release_bin, DATA, mix, warm=WARM, requests=REQUESTS, work=tmp_path)
    measured = result["per_request"]
    figures(f"instructions per /predict ({mix})", f"{measured:,.0f}")
    if os.environ.get("NBSERVE_PERF_WRITE_BASELINE") == "1":
        data = baseline() if BASELINE.exists() else {}
        data[mix] = round(measured)
        BASELINE.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        pytest.skip(f"baseline for {mix} written: {measured:,.0f}")
    allowed = baseline()[mix]
    top = sorted(result["functions"].items(), key=lambda kv: -kv[1])[:15]
    table = "\n".join(f"{v:>10,.0f}  {name[:100]}" for name, v in top)
    assert measured <= allowed * TOLERANCE, (
        f"/predict ({mix} mix) costs {measured:,.0f} instructions, "
        f"{measured / allowed - 1:+.1%} over the committed baseline {allowed:,} "
        f"(allowed: +{TOLERANCE - 1:.0%}). Where they go, per request:\n{table}")
