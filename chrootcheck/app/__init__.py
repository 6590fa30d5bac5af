"""The application layer: what every command runs, from a request to a report (no click, no
rendering).
"""
