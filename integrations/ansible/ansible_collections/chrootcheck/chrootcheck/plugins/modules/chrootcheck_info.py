#!/usr/bin/python
# Copyright: chrootcheck developers
# MIT License (see the repository's pyproject.toml)
"""Ansible module: scan chroot jails with chrootcheck and return the JSON report."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chrootcheck_info
short_description: Scan chroot jails for OpenSSL entropy failures
description:
  - Runs C(chrootcheck scan --format json) on the managed host and returns its report.
  - Inspects each jail as a chrooted process sees it (C(/dev/urandom), C(/dev/random), nodev
    mounts, permissions, the files OpenSSL loads late) and, unless O(probe=false), probes it
    with the real libcrypto.
  - Never changes the host, so it never reports C(changed) and runs in check mode too.
  - Findings do not fail the task; test RV(failing) (for example with C(failed_when)).
    A tool error (chrootcheck's exit code 2, such as a missing jail) fails it with
    chrootcheck's error line.
version_added: "0.1.0"
author:
  - chrootcheck developers
requirements:
  - chrootcheck on the managed host (C(pip install chrootcheck)), run as root for the probe
options:
  jails:
    description:
      - Host paths of the jails to scan.
      - Give O(jails), O(discover=true) or both.
    type: list
    elements: path
    default: []
  discover:
    description:
      - Also scan every jail this host's daemons are configured to use
        (C(chrootcheck scan --discover)), each with the user its daemon runs as.
    type: bool
    default: false
  user:
    description:
      - The service's user (C(NAME) or C(UID[:GID])); the permission checks and the probe
        use it.
    type: str
  fail_on:
    description:
      - The lowest severity that counts as failing (RV(failing)).
    type: str
    default: error
    choices: [critical, error, warning, info]
  probe:
    description:
      - Run the probe (the real libcrypto reseeding inside the jail). C(false) passes
        C(--no-probe).
    type: bool
    default: true
  executable:
    description:
      - The chrootcheck command. Default, C(chrootcheck) on PATH, else
        C(python -m chrootcheck) with the module's interpreter.
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Exit codes of chrootcheck are documented in its README; 0 and 1 give a report, 2 fails
    the task.
seealso:
  - module: chrootcheck.chrootcheck.chrootcheck_fix
"""

EXAMPLES = r"""
- name: Scan the haproxy jail
  chrootcheck.chrootcheck.chrootcheck_info:
    jails:
      - /var/lib/haproxy
    user: haproxy
  register: scan

- name: Fail when a jail fails
  ansible.builtin.assert:
    that: not scan.failing
    fail_msg: >-
      {{ scan.report.jails | selectattr('status', '!=', 'pass')
      | map(attribute='jail') | list }}

- name: Scan every jail the host's daemons use, without the probe
  chrootcheck.chrootcheck.chrootcheck_info:
    discover: true
    probe: false
    fail_on: warning
  register: scan
  failed_when: scan.failing
"""

RETURN = r"""
report:
  description:
    - chrootcheck's JSON report (schema in docs/json-format.md of chrootcheck).
  returned: always
  type: dict
  sample:
    schema_version: "1.0"
    tool: {name: chrootcheck, version: 0.1.0}
    jails:
      - jail: /var/lib/haproxy
        status: fail
        findings:
          - {check: CC101, severity: error, path: /dev/urandom,
             message: /dev/urandom is missing in the jail.}
    summary: {jails: 1, failing: 1, tool_errors: 0}
failing:
  description: Whether a finding at or above O(fail_on) was found (chrootcheck exited 1).
  returned: always
  type: bool
  sample: true
exit_code:
  description:
    - chrootcheck's exit code (0 clean, 1 findings at or above O(fail_on)).
    - Not called C(rc), which Ansible would read as a failure.
  returned: always
  type: int
  sample: 1
"""

# Ansible modules keep DOCUMENTATION first: the imports come after it.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.chrootcheck.chrootcheck.plugins.module_utils.cli import (  # noqa: E402
    COMMON_ARGS,
    fail_tool_error,
    run,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            jails={"type": "list", "elements": "path", "default": []},
            discover={"type": "bool", "default": False},
            user={"type": "str"},
            probe={"type": "bool", "default": True},
            **COMMON_ARGS,
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p["jails"] and not p["discover"]:
        module.fail_json(msg="give jails (a list of paths), discover: true, or both")
    args = ["scan", *p["jails"], "--format", "json", "--fail-on", p["fail_on"]]
    if p["discover"]:
        args.append("--discover")
    if p["user"]:
        args += ["--user", p["user"]]
    if not p["probe"]:
        args.append("--no-probe")
    rc, data, errors, stderr = run(module, args)
    if rc not in (0, 1) or data is None:
        fail_tool_error(module, rc, errors, stderr, report=data)
    module.exit_json(changed=False, report=data, failing=rc == 1, exit_code=rc)


if __name__ == "__main__":
    main()
