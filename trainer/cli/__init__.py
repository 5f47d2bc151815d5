"""The ``trainer`` command (click)."""
