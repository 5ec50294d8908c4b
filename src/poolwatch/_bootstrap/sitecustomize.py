"""Start-up hook of ``poolwatch run``: observe this process, then chain to any other hook."""

import importlib.util
import os
import sys

try:
    from poolwatch.runner import observe

    if observe():  # the program's own process, not one it started
        from poolwatch.runservice import serve_beside

        serve_beside()
except Exception as exc:  # never stop the user's program from starting
    print(f"poolwatch: could not instrument this process: {exc!r}", file=sys.stderr)

# Another sitecustomize further down the path (a virtualenv's, a distribution's) still runs.
_here = os.path.dirname(os.path.abspath(__file__))
for _entry in sys.path:
    if os.path.abspath(_entry or ".") == _here:
        continue
    _path = os.path.join(_entry or ".", "sitecustomize.py")
    if os.path.isfile(_path) and os.path.dirname(os.path.abspath(_path)) != _here:
        _spec = importlib.util.spec_from_file_location("_poolwatch_chained_sitecustomize", _path)
        if _spec is not None and _spec.loader is not None:
            _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
        break
