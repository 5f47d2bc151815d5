"""The Qt GUI (``trainer gui``): a client of the public gRPC API only (trainer.client).

Threads: TrainerQBridgeThread owns the WatchRuns stream, LogThread a StreamLogs
stream, Calls runs every unary call in a QThreadPool; all hand plain data (dicts,
lists) to the GUI thread through queued signals. docs/GUI.md has the details."""
