"""A jail's file system as a chrooted process sees it, and the static inspector over it."""
