"""Sensor devices and their signing keys."""
