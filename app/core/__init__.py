"""Core of the application: settings, database, models, events, bus. No HTTP here."""
