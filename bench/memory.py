"""Peak memory of this process, as the kernel counts it (resident set size).

A measured run happens in a process of its own. Just before it starts, the kernel's
high-water mark is reset to the current resident size (``/proc/self/clear_refs``, Linux 4.0
and later); just after, the new high-water mark minus that baseline is what the run needed at
its peak: Python objects, the driver's result buffers, everything. Where the mark cannot be
reset, ``ru_maxrss`` is used, which can only under-report a run that needs less than the
process's earlier peak; the method used is recorded with each figure.
"""

from __future__ import annotations

import gc
import resource
from dataclasses import dataclass
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_HIGH_WATER_MARK = "5"  # the clear_refs command that resets VmHWM to VmRSS


def _status_kib(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


@dataclass
class PeakMeter:
    method: str = "ru_maxrss"
    baseline_kib: int = 0

    def start(self) -> None:
        gc.collect()
        try:
            CLEAR_REFS.write_text(RESET_HIGH_WATER_MARK)
            self.method = "VmHWM reset"
        except OSError:
            self.method = "ru_maxrss"
        current = _status_kib("VmRSS")
        self.baseline_kib = current if current is not None else _max_rss_kib()

    def growth_mib(self) -> float:
        """How far the resident size rose above the baseline at its peak, in MiB."""
        peak = _status_kib("VmHWM") if self.method == "VmHWM reset" else None
        if peak is None:
            peak = _max_rss_kib()
        return max(0, peak - self.baseline_kib) / 1024
