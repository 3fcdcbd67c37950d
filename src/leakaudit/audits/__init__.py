"""Orchestration: one function per audit takes targets (or a training entry point) and a config,
runs the attacks, and returns a typed result whose records go to the report writer."""
