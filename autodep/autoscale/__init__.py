"""Autoscaling: a pure policy over a window of past traffic, and the manager that applies it."""
