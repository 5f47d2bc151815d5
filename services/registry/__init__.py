"""The registry: the only writer of the event log, and the sequencer of the bus."""
