"""Two generations sharing one manager, made to overlap: both are inside their loops at once,
and the second goes on after the first has finished (what offload's reference counts guard)."""
from __future__ import annotations

import threading

from engine import generate


def run_overlapping(reqs: list, manager, timeout: float) -> list:
    """The two requests' results, run in two threads that overlap as the module says."""
    both_running, first_done = threading.Barrier(2, timeout=timeout), threading.Event()

    def on_step(i):
        def step(n, total, preview):
            if n == 1:
                both_running.wait()
            if i == 1 and n == 2:
                first_done.wait(timeout)   # the second runs on after the first has finished
        return step

    results = [None, None]

    def run(i):
        results[i] = generate(reqs[i], on_step=on_step(i), manager=manager, save=False)
        if i == 0:
            first_done.set()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * timeout)
    return results
