"""Topic names, in one place. Keys: grid code for intake, case id for case events."""

INTAKE = "gridflow.intake"
CASE_EVENTS = "gridflow.case-events"
DEAD_LETTER = "gridflow.dead-letter"

ALL = (INTAKE, CASE_EVENTS, DEAD_LETTER)
