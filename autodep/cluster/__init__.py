"""autodep on a Ray cluster: one agent and one HTTP front end per node (optional extra `ray`).

Only the modules of this package import Ray; single-host autodep never imports them.
"""
