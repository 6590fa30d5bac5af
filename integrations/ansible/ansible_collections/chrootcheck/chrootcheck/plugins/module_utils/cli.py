# Copyright: chrootcheck developers
# MIT License (see the repository's pyproject.toml)
"""Run the chrootcheck CLI on the managed host and read its JSON output."""

from __future__ import annotations

import importlib.util
import json
import sys

# Options every module shares.
COMMON_ARGS = {
    "executable": {"type": "path"},
    "fail_on": {
        "type": "str",
        "default": "error",
        "choices": ["critical", "error", "warning", "info"],
    },
}


def command(module):
    """The chrootcheck command line: the ``executable`` option, else ``chrootcheck`` on PATH
    (and the usual sbin/bin folders), else ``python -m chrootcheck`` with the interpreter that
    runs the module, when it can import chrootcheck."""
    executable = module.params.get("executable")
    if executable:
        return [executable]
    found = module.get_bin_path("chrootcheck")
    if found:
        return [found]
    if importlib.util.find_spec("chrootcheck") is not None:
        return [sys.executable, "-m", "chrootcheck"]
    module.fail_json(
        msg="chrootcheck is not installed on this host: neither a chrootcheck command on PATH "
        "nor a chrootcheck package for " + sys.executable + " (pip install chrootcheck, or "
        "set executable)"
    )
    raise AssertionError("unreachable")  # fail_json exits


def run(module, args):
    """Run chrootcheck; return (exit code, parsed JSON or None, error lines, stderr)."""
    cmd = command(module) + list(args)
    rc, out, err = module.run_command(
        cmd, check_rc=False, environ_update={"NO_COLOR": "1", "LC_ALL": "C.UTF-8"}
    )
    data = None
    if out.strip():
        try:
            data = json.loads(out)
        except ValueError:
            data = None
    errors = [line for line in err.splitlines() if line.startswith("chrootcheck: error:")]
    return rc, data, errors, err


def fail_tool_error(module, rc, errors, stderr, **extra):
    """Exit 2 (or anything unexpected): fail with chrootcheck's own error line."""
    msg = "; ".join(errors) or stderr.strip() or f"chrootcheck exited with {rc}"
    module.fail_json(msg=msg, exit_code=rc, stderr=stderr, **extra)
