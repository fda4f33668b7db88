"""Photos: checked, stripped of metadata, stored under their digest."""
