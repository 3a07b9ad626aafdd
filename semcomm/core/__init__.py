"""Foundations every stage may use: the registry of named strategies, seeding, patch geometry, paths, devices."""
