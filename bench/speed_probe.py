"""How fast this machine runs Python right now.

The project's machines are shared 2-core VMs whose speed drifts: the same
code has measured 2.2-2.8 times slower from one session to the next, and by
up to 2 times within minutes. Every benchmark prints this reference (the CPU
time of a fixed loop, best of five) before and after its timings, so that a
figure can be read against the machine's speed at that moment. On a machine
at its usual best the loop takes about 32 ms.
"""
from __future__ import annotations

import time

USUAL_BEST_MS = 32.0


def reference_ms() -> float:
    best = float("inf")
    for _ in range(5):
        t = time.process_time()
        sum(i * i for i in range(1_000_000))
        best = min(best, time.process_time() - t)
    return best * 1000


def line(when: str) -> str:
    ms = reference_ms()
    return f"speed probe {when}: {ms:.1f} ms for the reference loop ({ms / USUAL_BEST_MS:.2f} × the usual best)"
