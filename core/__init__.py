"""The domain: event types, the run state machine, projections, commands, settings.

Standard library only. Nothing in this package does I/O or imports zmq, msgpack,
sqlite3 or grpc; every service and tool shares it.
"""
