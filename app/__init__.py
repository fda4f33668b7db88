"""gridflow application: core (settings, db, models, events, bus), intake and HTTP."""
