"""Models at runtime: versions, their lifecycle, routing, load/unload/rollout, and poll mode.

manager.py    `Repository`: load, unload and roll out versions on ModelPools; the
              only owner of the routing table (`get(name, version)`)
routes.py     the routing table: live versions, the newest ready one of each model
served.py     `ServedModel`: one loaded version (config, codec, pool, variant, in-flight)
inflight.py   requests holding a version, so a retired version is stopped only
              after every request that found it is done
versions.py   one model version's state machine (loading → ready → draining → unloaded,
              or failed with a reason)
history.py    the versions' records and transitions: the index, /status, /metrics
budget.py     room in the worker budget for a version that is loading
entries.py    which entry a load without a config means (the YAML's, else the current)
policy.py     version_policy: which versions of an entry are served
poll.py       poll mode: watch the repository YAML and model files
errors.py     the repository's refusals
boundary.py   the trust boundary of loads: a client's entry names files only inside the
              repository directory
retention.py  which finished versions the history keeps (a bounded history)
"""
