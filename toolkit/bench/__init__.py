"""The bench room (`toolkit bench`): how fast a model runs on each backend, and whether it got slower.

- `run`: subjects, batch-1 latency against the reference workload, the batch sweep, head-to-heads, baseline entries;
- `backends`: the `BenchedModel` (a preset or a bundle) and one runner per backend; `int8`: a quick Q/DQ graph of a
  preset when no bundle carries one;
- `reference`: the fixed reference workloads latency is normalized by; `baseline`: the regression files;
- `report`: the table and the batch-sweep plot.
It imports the export room (graphs, MAC counts) and the shared timing harness (toolkit.timing), never the reverse.
"""
