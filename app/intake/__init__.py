"""Intake: resident reports and sensor alerts, validated, located and stored with their event."""
