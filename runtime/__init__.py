"""Running as a service: start-up, the singleton lock, structured logs, the version
check, the status beacon, atomic files and the installed-package scans.

May import ``core`` and ``bus``; ``services`` and ``worker`` import it. Neither ``core``
nor ``bus`` imports it (import-linter's layers contract in pyproject.toml).
"""
