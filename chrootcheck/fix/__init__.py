"""Plan and apply the repair of a jail's entropy devices."""
