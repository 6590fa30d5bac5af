"""chrootcheck: find, explain and fix OpenSSL's entropy failures inside chroot jails."""

__version__ = "0.1.0"
