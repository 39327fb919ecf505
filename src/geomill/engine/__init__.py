"""The engine: registry of job and task types, planning, stage advancement, finalization, routing, retries.

It talks to the outside only through the Store and Dispatch protocols declared in `engine.ports`.
"""
