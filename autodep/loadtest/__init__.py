"""The load tool, `autodep loadtest`: request schedules (`schedule`), the open-loop
executor (`executor`) with its /metrics scraper (`capture`), the records it writes
(`records`, `results`) and a run's report (`stats`, `report`, `plots`).

Pure Python and numpy except the figures (matplotlib) and the progress bar (tqdm),
which come with the `loadtest` extra.
"""
