"""Routes over a whole dataset (docs/analysis.md): which heads, FFN blocks and neurons lie on the
routes of many prompts, per label, computed locally or on a Ray cluster, and reports of them.

- dataset.py: reading prompts (text, JSONL, a `datasets` folder) in shards; the shipped sample
- stats.py: the statistics and their exact merge
- collect.py: one prompt's contribution
- run.py: shards, executors, the output folder, resuming
- ray_executor.py: the Ray executor (optional extra `routelens[ray]`)
- report.py: heatmaps, top neurons, label differences, previous-token and subword-merging heads
"""
