"""Live services: the processes that run in jails now, read from /proc without touching them.

``procfs`` reads one process (root, namespace, maps, descriptors, seccomp state) and never
writes to, signals or ptraces it; ``ps`` groups them by jail; ``libversion`` finds the OpenSSL
version string in a mapped file's bytes without loading it; ``seccomp`` (opt-in, root) reads a
process's seccomp filters with ptrace and replays them in a forked child; ``elfdeps`` says which
libcrypto a binary would load, by the dynamic loader's rules, without running it.
"""
