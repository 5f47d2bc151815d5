"""Workers: the SDK any training script uses to report onto the bus, the launcher the
dispatcher runs, and the built-in workers."""
