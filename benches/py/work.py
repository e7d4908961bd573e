"""The task functions of the DESIGN.md workloads, shared by every Python pool
that `peers.py` times.

They live in a module of their own, not in `peers.py`'s `__main__`, so that
every pool pickles them by reference (`work.square`) the way a user's
library functions are pickled: cloudpickle (loky) would otherwise send a
`__main__` function by value with every chunk, and a pool whose workers do
not fork the parent (spawn, forkserver, loky, fresh worker interpreters)
finds `work` on the `sys.path` the parent hands down.
"""

import time

# Samples of one W3 task.
W3_SAMPLES = 100_000


def square(x):
    """W1, and the trivial task of W4."""
    return x * x


def sleep(seconds):
    """W2: one job of w2_jobs.json."""
    time.sleep(seconds)


def pi_task(i):
    """W3: one Monte Carlo pi task; numpy is imported here, so that W4's
    workers do not pay for importing it."""
    import numpy as np

    xy = np.random.default_rng(i).random((2, W3_SAMPLES))
    return int(np.count_nonzero(xy[0] * xy[0] + xy[1] * xy[1] < 1.0))


def length(payload):
    """W5: the worker returns the length of the payload it got."""
    return len(payload)


def inc(x):
    """W6: trivial work per item."""
    return x + 1
