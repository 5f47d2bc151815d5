"""Experiments (sweeps over configs and seeds, issue 17): the client-side pieces.
`table` formats an experiment's results (`runtime.experimentresults`) as text, CSV or
JSON; `plot` draws their curves and performance profile into a PNG. The statistics
themselves are `runtime.seedstats` (shared with the gateway)."""
