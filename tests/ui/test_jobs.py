"""The one generation queue: first come, first served, across threads."""
import threading
import time

from ui.jobs import FifoLock


def test_waiters_get_the_lock_in_the_order_they_asked():
    lock, order, threads = FifoLock(), [], []
    lock.acquire()
    for i in range(8):
        def work(i=i):
            with lock:
                order.append(i)
        t = threading.Thread(target=work)
        t.start()
        threads.append(t)
        while lock.waiting < i + 2:    # this one holds its ticket before the next asks
            time.sleep(0.001)
    lock.release()
    for t in threads:
        t.join(10)
    assert order == list(range(8))
