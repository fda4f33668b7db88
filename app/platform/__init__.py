"""The machinery every part runs on: settings, clock, errors, the database and its unit of work,
the bus (embedded or Kafka), the outbox and its relay, the live feed hub, clean stopping.
"""
