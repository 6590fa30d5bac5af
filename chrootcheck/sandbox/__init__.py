"""The service's real sandbox, as a model: the seccomp filter and the device policy a systemd
unit or an OCI/Docker/Podman/Kubernetes seccomp profile puts a service under.

``model`` holds the frozen types (``Sandbox``, ``SeccompFilter``, ``Rule``, ``Action``,
``DevicePolicy``) and answers what a system call or a random device gets under them;
``oci.parse_profile`` reads a JSON profile, ``systemd.parse_unit`` a unit and its drop-ins (the
caller reads the files, inside ``--root`` through ``jail.fs``), with ``@groups`` expanded by this
machine's ``systemd-analyze syscall-filter``. docs/sandboxes.md describes the model.
"""
