"""Offline batch inference: every item of a folder, JSON Lines file or s3:// prefix
through the same codecs, pool, batching and variant as the server, in process.

`run.map_items` is the engine (also `Autodep.map`); `sources` reads inputs,
`results` keeps the resumable JSON Lines log; `command` is `autodep batch`.
"""
