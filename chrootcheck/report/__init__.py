"""The report model: findings, notices, the check catalogue, exit codes, tool errors."""
