"""The reading side of the event log (``events.db``), shared by the registry and the
``trainer replay`` audit tool: iterate stored events (``reader``), check the hash chain
(``chaincheck``) and the head recorded outside the database (``anchor``), the layout
of the projection tables (``tables``), rebuild them from seq 0 (``rebuild``), compare
two databases' projections (``compare``) and the whole audit (``audit``).

Layers: ``core`` (pure) <- ``eventstore`` (sqlite3; ``core`` and ``bus.codec``, the
payload encoding) <- ``services/registry`` (the only writer) and ``trainer/cli``.
"""
