"""The libcrypto side of chrootcheck.

``errcodes`` is pure Python (the log decoder uses it without a libcrypto); the other modules
load a libcrypto through cffi in ABI mode and are imported only by the commands that need one.
"""
