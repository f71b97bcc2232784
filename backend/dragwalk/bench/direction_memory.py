"""``dragwalk bench directions --memory``: peak resident-memory growth of each direction method.

Issue 13 allows one request 200 MB of peak growth. Each method runs with its defaults (the most a
client may ask for is within its ranges, `directions/ranges.py`) in a fresh Python process, so one
method's freed heap cannot hide another's: the child loads the model, hands freed heap back, resets
the kernel's high-water mark (``/proc/self/clear_refs``) and reports ``VmHWM - VmRSS`` after the
computation, with the seconds it took.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: the methods whose memory grows with their sample counts
SAMPLED = ("ganspace", "sfvq")

_CHILD = """
import json, sys, time, torch
from dragwalk.bench.step import _release_free_heap, _status_kb
from dragwalk.directions import compute_directions
from dragwalk.models import load_model
torch.set_num_threads(int(sys.argv[3]))
generator = load_model(sys.argv[1])
params = json.loads(sys.argv[4])
compute_directions(generator, "sefa")                 # first-use costs (allocator, BLAS) apart
_release_free_heap()
open("/proc/self/clear_refs", "w").write("5")
base = _status_kb("VmRSS")
began = time.perf_counter()
result = compute_directions(generator, sys.argv[2], **params)
took = time.perf_counter() - began
print(json.dumps({"method": sys.argv[2], "seconds": took, "peak_mb": (_status_kb("VmHWM") - base) / 1024,
                  "held_mb": (_status_kb("VmRSS") - base) / 1024, "count": len(result)}))
"""


def memory_table(model: str, methods: tuple[str, ...] = SAMPLED, threads: int = 1,
                 params: dict | None = None) -> list[dict]:
    """Peak RSS growth and time of each method's default run, one child process each."""
    rows = []
    for method in methods:
        out = subprocess.run([sys.executable, "-c", _CHILD, model, method, str(threads),
                              json.dumps((params or {}).get(method, {}))],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(f"  {method:10s} {row['seconds']:7.1f} s   peak +{row['peak_mb']:6.0f} MB   "
              f"held after +{row['held_mb']:5.0f} MB   (target <= 200 MB)", flush=True)
    return rows
