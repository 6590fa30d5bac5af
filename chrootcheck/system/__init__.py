"""The host below everything else: libc and libseccomp through cffi, forked workers, files written
atomically.
"""
