"""Automatic optimization: each model served in the fastest form this machine runs correctly.

Candidates (`candidates.py`) are data: a name, whether it applies on this CPU and model, how to
prepare the model and how a worker loads the result. One search (`search.py`, in a child
process) prepares each candidate, judges it with one accuracy gate (`gate.py`) against the model
as given, measures it with one measurer (`measure.py`), and a pure function (`select.py`) picks
the variant. The outcome is cached (`cache.py`) by everything that could change it; the server
resolves each model's variant (`resolve.py`) before its pool starts, and the workers load it.

The server process imports only the light modules (`cpu`, `cache`, `select`, `report`,
`resolve`): torch runs in the search child and in the workers, never in the server.
"""
