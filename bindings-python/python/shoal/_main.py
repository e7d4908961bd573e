"""How the pool process's ``__main__`` reaches worker processes.

A worker's ``__main__`` is not the pool process's (``forkserver``,
``spawn``), so a function or class defined there cannot travel by name;
cloudpickle sends it by value. Sent as cloudpickle does it alone, each
function would get a namespace of its own in the worker, and code written
for ``multiprocessing`` breaks: an initializer's ``global conn; conn = ...``
is not seen by the tasks, and instances of ``__main__``'s classes (as
arguments, results or exceptions) cannot be found by name. So, with
:func:`pickler`:

- every function sent by value runs in the worker's ``__main__``
  namespace. The pool process's values of the globals it uses are set
  there, except for names that code run in the worker assigns as globals
  (``global conn``): those keep the worker's value (the initializer's
  connection, a task's cache), as in a ``multiprocessing`` worker;
- every class sent by value is set in the worker's ``__main__`` under its
  name, so that its instances travel by name from then on: a result comes
  back as an instance of the pool process's own class, an exception is
  caught by ``except`` with it;
- a chunk of arguments that the C pickler wrote by name and that names
  ``__main__`` is pickled again with :func:`pickler` (``_codec``).

With ``start_method="fork"`` the workers are copies of the pool process:
the functions and classes ``__main__`` had at the fork (``snapshot``)
travel by name, as ``multiprocessing``'s ``fork`` sends them.

The worker side (``main_namespace``, ``main_attribute``, the state
setters) imports nothing until it is used: it runs in every worker.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Set

_FunctionType = type(lambda: None)
_CodeType = type(_FunctionType.__code__)  # type: ignore[attr-defined]

PROTOCOL = 5  # pickle.HIGHEST_PROTOCOL on 3.8+; _codec uses it too


# ------------------------------------------------------------ worker side


def main_namespace() -> "Dict[str, Any]":
    """The namespace of this process's ``__main__``."""
    return sys.modules["__main__"].__dict__


class _MainNamespace:
    """Stands for the worker's ``__main__`` namespace in a pickle."""

    def __reduce__(self) -> "Any":
        return main_namespace, ()


MAIN_NAMESPACE = _MainNamespace()

#: The globals of ``__main__`` that code run in this process assigns.
_assigned: "Set[str]" = set()


def _note_assignments(code: "Any") -> None:
    """Adds the globals that ``code`` (and the code nested in it) assigns or
    deletes to :data:`_assigned`."""
    import dis

    stack = [code]
    while stack:
        c = stack.pop()
        for ins in dis.get_instructions(c):
            if ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
                _assigned.add(ins.argval)
        stack.extend(k for k in c.co_consts if isinstance(k, _CodeType))


def main_attribute(name: str) -> "Any":
    """``__main__.name`` here: an object the worker has as a copy of the
    pool process (``fork``)."""
    obj = getattr(sys.modules["__main__"], name)
    if isinstance(obj, _FunctionType):
        _note_assignments(obj.__code__)
    return obj


def set_function_state(func: "Any", state: "Any") -> None:
    """cloudpickle's state setter for a function sent into ``__main__``'s
    namespace, keeping the names this process assigns (module docs)."""
    from cloudpickle import cloudpickle as cp

    _note_assignments(func.__code__)
    namespace = func.__globals__
    values = state[1]["__globals__"]
    for name in [n for n in values if n in _assigned and n in namespace]:
        del values[name]
    cp._function_setstate(func, state)


def set_class_state(cls: "Any", state: "Any") -> "Any":
    """cloudpickle's state setter for a class of ``__main__``, which it then
    sets in this process's ``__main__`` under its name."""
    from cloudpickle import cloudpickle as cp

    cls = cp._class_setstate(cls, state)
    name = cls.__qualname__
    if "." not in name and "<" not in name:
        main_namespace()[name] = cls
    return cls


# ------------------------------------------------------------ parent side


def snapshot() -> "Dict[str, Any]":
    """The module-level functions and classes of ``__main__`` now, by name
    (held, so that an object found under its name later is the same one,
    not a new one at a freed one's address)."""
    main = sys.modules.get("__main__")
    found: "Dict[str, Any]" = {}
    for name, obj in list(getattr(main, "__dict__", {}).items()):
        if (
            isinstance(obj, (type, _FunctionType))
            and getattr(obj, "__module__", None) == "__main__"
            and getattr(obj, "__qualname__", None) == name
        ):
            found[name] = obj
    return found


#: The pickler class, made on first use (it needs cloudpickle).
_Pickler: "Any" = None


def pickler(file: "Any", inherited: "Optional[Dict[str, Any]]" = None) -> "Any":
    """A cloudpickle pickler writing to ``file`` that sends ``__main__``'s
    functions and classes as the module docs say; those of ``inherited``
    (a :func:`snapshot`) by name."""
    global _Pickler
    if _Pickler is None:
        _Pickler = _make_pickler()
    return _Pickler(file, inherited or {})


def _make_pickler() -> "Any":
    import cloudpickle
    from cloudpickle import cloudpickle as cp

    # cloudpickle's state setters (3.x); without them, its own ways.
    function_setstate = getattr(cp, "_function_setstate", None)
    class_setstate = getattr(cp, "_class_setstate", None)

    class Pickler(cloudpickle.Pickler):
        def __init__(self, file: "Any", inherited: "Dict[str, Any]") -> None:
            super().__init__(file, protocol=PROTOCOL)
            self._inherited = inherited

        def reducer_override(self, obj: "Any") -> "Any":
            is_class = isinstance(obj, type)
            if not is_class and not isinstance(obj, _FunctionType):
                return NotImplemented
            if getattr(obj, "__module__", None) != "__main__":
                return super().reducer_override(obj)
            name = getattr(obj, "__qualname__", None)
            if isinstance(name, str) and self._inherited.get(name) is obj:
                return main_attribute, (name,)
            rv = super().reducer_override(obj)
            # cloudpickle's reductions by value: (make, args, state, None,
            # None, setter); anything else is left as it is.
            if not (isinstance(rv, tuple) and len(rv) == 6):
                return rv
            make, args, state, items, pairs, setter = rv
            if is_class and setter is class_setstate is not None:
                return make, args, state, items, pairs, set_class_state
            if (
                setter is function_setstate is not None
                and obj.__globals__ is main_namespace()
                and isinstance(args, tuple)
                and len(args) == 5
            ):
                args = (args[0], MAIN_NAMESPACE, *args[2:])
                return make, args, state, items, pairs, set_function_state
            return rv

    return Pickler
