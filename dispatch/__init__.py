"""The dispatch engine: intake consumer, case state machine, assignment, SLA clock.

Never imports FastAPI. Functions take an AsyncSession owned by the caller's unit of work and
only flush; the caller commits.
"""
