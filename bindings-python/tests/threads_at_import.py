"""A task module whose import starts a thread: a fork server that imported
it must not fork any more (tests)."""

import threading

_never = threading.Event()
threading.Thread(target=_never.wait, name="started-at-import", daemon=True).start()


def double(x):
    return 2 * x
