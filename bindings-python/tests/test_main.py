"""The pool process's ``__main__`` in worker processes (``shoal._main``):
code written for ``multiprocessing`` with its functions, classes and
initializer in the main script."""

import os
import subprocess
import sys
import textwrap

import pytest

_SCRIPT = """
    import enum, sys
    from dataclasses import dataclass
    import shoal

    _conn = None
    CONFIG = "first"

    def init(value):
        global _conn
        _conn = value

    def task(x):
        return _conn, x

    def cached(x):
        global _seen
        try:
            _seen += 1
        except NameError:
            _seen = 1
        return _seen

    def config(_):
        return CONFIG

    @dataclass
    class Point:
        x: int

    class Color(enum.Enum):
        RED = 1

    class MyError(Exception):
        pass

    def use(p):
        return p.x

    def make(x):
        return Point(x)

    def red(_):
        return Color.RED

    def fail(_):
        raise MyError("custom")

    def call(f):
        return f(2)

    def double(x):
        return 2 * x

    if __name__ == "__main__":
        with shoal.Pool(1, initializer=init, initargs=("db",), start_method=sys.argv[1]) as p:
            # The initializer's globals are the tasks' globals.
            assert p.map(task, range(3), chunksize=1) == [("db", 0), ("db", 1), ("db", 2)]
            # A task's own globals live on in its worker.
            assert p.map(cached, range(3), chunksize=1) == [1, 2, 3]
            # The globals a task only reads come as they are now.
            assert p.apply(config, (0,)) == "first"
            CONFIG = "second"
            if sys.argv[1] != "fork":  # fork: by name, as at the fork
                assert p.apply(config, (0,)) == "second"
            # Classes of __main__ as arguments, results and exceptions.
            assert p.map(use, [Point(i) for i in range(3)]) == [0, 1, 2]
            r = p.apply(make, (5,))
            assert type(r) is Point and r == Point(5), r
            assert p.apply(red, (0,)) is Color.RED
            try:
                p.apply(fail, (0,))
            except MyError as e:
                assert str(e) == "custom"
            else:
                raise AssertionError("no MyError")
            # A function of __main__ as an argument.
            assert p.apply(call, (double,)) == 4
            assert p.map(task, range(2)) == [("db", 0), ("db", 1)]
"""


@pytest.mark.parametrize("start_method", ["forkserver", "spawn", "fork"])
def test_main_script_code_written_for_multiprocessing(tmp_path, start_method):
    script = tmp_path / "main_script.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script), start_method],
        cwd=os.path.dirname(__file__),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
