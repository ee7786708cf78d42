"""Models at runtime: versions, their lifecycle, load/unload/rollout, and poll mode.

versions.py   one model version's state machine (loading → ready → draining → unloaded,
              or failed with a reason)
policy.py     version_policy: which versions of an entry are served
inflight.py   requests in progress by routing generation, so a retired version
              is stopped only after every request that could still reach it is done
manager.py    the runtime registry: load, unload and roll out on top of ModelPools
poll.py       poll mode: watch the repository YAML and model files
boundary.py   the trust boundary of loads: a client's entry names files only inside the
              repository directory
retention.py  which finished versions the index keeps (a bounded history)
"""
