"""Workers: the SDK any training script uses to report onto the bus, the runner the
dispatcher runs, and the built-in workers."""
