"""Experiments (sweeps over configs and seeds, issue 17): the client-side pieces. So far
`stats`, the statistics over the seeds of one config point and their curves."""
