"""`gridflow doctor`: is this installation fit to run? One finding a check, read-only."""

from app.doctor.checks import Finding, Status, examine

__all__ = ["Finding", "Status", "examine"]
