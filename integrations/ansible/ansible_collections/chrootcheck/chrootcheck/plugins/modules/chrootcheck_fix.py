#!/usr/bin/python
# Copyright: chrootcheck developers
# MIT License (see the repository's pyproject.toml)
"""Ansible module: create a jail's missing entropy devices with chrootcheck fix."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chrootcheck_fix
short_description: Create the missing /dev/urandom and /dev/random in a chroot jail
description:
  - Runs C(chrootcheck fix JAIL --mknod) or C(--bind) with C(--format json) on the managed
    host. chrootcheck plans the change, applies it and scans the jail again.
  - Never overwrites or deletes. A wrong node (a regular file, a FIFO, the wrong device
    numbers) is left alone and reported unless O(replace=true), which renames it aside
    (content kept).
  - Idempotent. RV(changed) is true exactly when a step of the plan was carried out (its
    outcome is C(done) in chrootcheck's JSON); a second run finds the nodes correct and
    reports no change.
  - In check mode it runs C(--dry-run) and reports the plan; RV(changed) then says whether
    applying it would change the jail. In diff mode the plan is shown as the diff.
  - A refusal or a failed step (chrootcheck's exit code 2) fails the task with chrootcheck's
    error line. Findings that remain afterwards do not fail it; test RV(failing).
version_added: "0.1.0"
author:
  - chrootcheck developers
requirements:
  - chrootcheck on the managed host (C(pip install chrootcheck)); root (C(become))
options:
  jail:
    description: Host path of the jail.
    type: path
    required: true
  method:
    description:
      - C(mknod) creates the device nodes (needs CAP_MKNOD, not on a nodev file system).
      - C(bind) bind-mounts the host's nodes onto empty placeholder files; it does not
        survive a reboot on its own (RV(plan) holds the fstab line and systemd units).
    type: str
    default: mknod
    choices: [mknod, bind]
  replace:
    description: Rename a wrong node or a file in the way aside (content kept), then fix.
    type: bool
    default: false
  only:
    description: Fix only this device.
    type: str
    choices: [urandom, random]
  mode:
    description: Permission bits of nodes made with O(method=mknod), in octal.
    type: str
  fail_on:
    description: The lowest severity of the scan afterwards that counts as failing.
    type: str
    default: error
    choices: [critical, error, warning, info]
  executable:
    description:
      - The chrootcheck command. Default, C(chrootcheck) on PATH, else
        C(python -m chrootcheck) with the module's interpreter.
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: chrootcheck.chrootcheck.chrootcheck_info
"""

EXAMPLES = r"""
- name: Give the haproxy jail its entropy devices
  chrootcheck.chrootcheck.chrootcheck_fix:
    jail: /var/lib/haproxy
  become: true

- name: On a nodev file system, bind-mount the host's nodes, moving a fake node aside
  chrootcheck.chrootcheck.chrootcheck_fix:
    jail: /srv/jail/postfix
    method: bind
    replace: true
  register: fixed
  failed_when: fixed.failing
"""

RETURN = r"""
plan:
  description: chrootcheck's plan (steps with their action, path and reason).
  returned: always
  type: dict
  sample:
    jail: /var/lib/haproxy
    method: mknod
    steps:
      - {action: mknod, path: /dev/urandom, reason: /dev/urandom is missing, mode: "0666"}
    changes: true
outcomes:
  description: What each step did (C(done), C(unchanged), C(failed), C(skipped)).
  returned: unless check mode
  type: list
  elements: dict
  sample: [{step: 0, status: done, message: created /dev/urandom}]
made:
  description: Paths inside the jail where a node was made or a mount was put.
  returned: always
  type: list
  elements: str
  sample: [/dev/urandom, /dev/random]
scan:
  description: The scan of the jail after the fix (the JSON report of chrootcheck scan).
  returned: unless check mode
  type: dict
failing:
  description: Whether findings at or above O(fail_on) remain after the fix.
  returned: always
  type: bool
  sample: false
exit_code:
  description:
    - chrootcheck's exit code (0 the jail is correct afterwards, 1 findings remain).
    - Not called C(rc), which Ansible would read as a failure.
  returned: always
  type: int
  sample: 0
"""

# Ansible modules keep DOCUMENTATION first: the imports come after it.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.chrootcheck.chrootcheck.plugins.module_utils.cli import (  # noqa: E402
    COMMON_ARGS,
    fail_tool_error,
    run,
)

# Steps that change the jail when their outcome is "done" (keep and leave never are).
CHANGING = ("mkdir", "mknod", "placeholder", "bind", "rename-aside")
MAKES = ("mknod", "bind")


def plan_text(plan):
    """The plan as a diff: one line per step, + for a change, = for what stays."""
    lines = []
    for step in plan.get("steps") or []:
        mark = "+" if step["action"] in CHANGING else "="
        what = step["action"]
        if step.get("device"):
            what += " c {}:{}".format(*step["device"])
        if step.get("mode"):
            what += " mode " + step["mode"]
        if step.get("source"):
            what += " from " + step["source"]
        if step.get("new_path"):
            what += " to " + step["new_path"]
        lines.append(f"{mark} {step['path']}: {what} ({step['reason']})")
    refusal = plan.get("refusal")
    if refusal:
        lines.append(f"! refused: {refusal.get('message')}")
    return "\n".join(lines) + "\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            jail={"type": "path", "required": True},
            method={"type": "str", "default": "mknod", "choices": ["mknod", "bind"]},
            replace={"type": "bool", "default": False},
            only={"type": "str", "choices": ["urandom", "random"]},
            mode={"type": "str"},
            **COMMON_ARGS,
        ),
        supports_check_mode=True,
    )
    p = module.params
    args = ["fix", p["jail"], "--" + p["method"], "--format", "json", "--fail-on", p["fail_on"]]
    if p["replace"]:
        args.append("--replace")
    if p["only"]:
        args += ["--only", p["only"]]
    if p["mode"]:
        args += ["--mode", p["mode"]]
    if module.check_mode:
        args.append("--dry-run")
    rc, data, errors, stderr = run(module, args)
    if rc not in (0, 1) or data is None or "plan" not in data:
        fail_tool_error(module, rc, errors, stderr, fix=data)
    plan = data["plan"]
    steps = plan.get("steps") or []
    result = {"plan": plan, "exit_code": rc, "failing": rc == 1}
    if module._diff:
        result["diff"] = {"prepared": plan_text(plan)}
    if module.check_mode:
        result["changed"] = any(s["action"] in CHANGING for s in steps)
        result["made"] = [s["path"] for s in steps if s["action"] in MAKES]
    else:
        outcomes = data.get("outcomes") or []
        done = [steps[o["step"]] for o in outcomes if o["status"] == "done"]
        result["changed"] = any(s["action"] in CHANGING for s in done)
        result["made"] = [s["path"] for s in done if s["action"] in MAKES]
        result["outcomes"] = outcomes
        result["scan"] = data.get("scan")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
