"""A task module that records the process that imported it (tests of the
fork server's imports ahead of the workers)."""

import os

IMPORTED_IN = os.getpid()


def where(_=None):
    """This worker's pid and the pid of the process that imported this module."""
    return os.getpid(), IMPORTED_IN
