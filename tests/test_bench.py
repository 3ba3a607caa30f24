"""scripts/bench must keep working: a quick round (small inputs, one run each) prints a row
for every case, and both programs reached their final system call in each load case.

No timing is asserted here: the speed targets are the benchmark's business
(scripts/bench --check), not a test's, which a busy CI machine would make flaky.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = ["a", "b", "c100", "c1000", "d-help", "d-S", "d-u-p", "s-l", "s-p", "f-a", "f-c"]


def test_quick_bench_prints_every_case(tmp_path):
    samples = tmp_path / "samples.json"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "bench"), "--quick", "--json", str(samples)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {line.split()[0]: line for line in p.stdout.splitlines() if line.split()}
    assert set(CASES) <= set(rows), p.stdout
    assert not any("FAILED" in rows[c] for c in CASES), p.stdout
    assert "c growth" in p.stdout and "b segment bytes" in p.stdout
    data = json.loads(samples.read_text())
    assert set(data) == set(CASES)
    for case in CASES:
        for who in ("ours", "theirs"):
            (sample,) = data[case][who]
            assert sample["wall"] > 0 and sample["rss_kib"] > 0, (case, who)
            assert "calls" not in sample, "the measured runs are not traced"
            assert data[case]["peak"][who] > 0, (case, who)        # GNU time's peak RSS
    # the load cases ran to the end: in each program's traced warm-up run, the last kexec call
    # failed with the guard's EPERM, and the measured run exited as the warm-up did
    # (f: a kernel without kexec_file_load, the guard answering ENOSYS; -a -p falls back to kexec_load)
    for case, call, errno in (("a", "kexec_load(", "EPERM"), ("b", "kexec_load(", "EPERM"),
                              ("c100", "kexec_load(", "EPERM"), ("s-l", "kexec_file_load(", "EPERM"),
                              ("s-p", "kexec_file_load(", "EPERM"), ("f-a", "kexec_load(", "ENOSYS"),
                              ("f-c", "kexec_load(", "ENOSYS")):
        for who in ("ours", "theirs"):
            warmup = data[case]["warmup"][who]
            calls = [c for c in warmup["calls"] if call in c]
            assert calls and f"= -1 {errno} (" in calls[-1], (case, who, warmup)
            assert data[case][who][0]["exit"] == warmup["exit"] != 0, (case, who)
    assert data["d-S"]["ours"][0]["exit"] == data["d-S"]["theirs"][0]["exit"] == 0
    # -a -p on a kernel without kexec_file_load tried it first, then kexec_load
    for who in ("ours", "theirs"):
        names = [re.search(r"(kexec_\w+|reboot)\(", c).group(1) for c in data["f-a"]["warmup"][who]["calls"]]
        assert "kexec_file_load" in names and names[-1] == "kexec_load", (who, names)
