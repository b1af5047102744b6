"""The outbox: the tables every job lives in and the SQL that reads and writes them.

Tables are declared per area on one ``MetaData`` (``base``; ``models`` for the core tables,
``catalog_models``, ``intake_models``, ``ops_models``); ``tables`` imports them all for
Alembic (``migrations/``) and ``create_all``.

SQL lives in one module per area, one named function per statement, each taking a
``Connection`` inside a transaction the caller opened (so a caller composes several into one
atomic step):

- ``queries``: branches, the lease and the drain (``hot`` runs the drain's per-job statements
  on the driver's cursor);
- ``enqueue_queries``: dedupe by key, job and dependency inserts;
- ``catalog_queries``: the item catalogue and item-code counters;
- ``device_queries``: devices, their keys and KRA's tax rates;
- ``intake_queries``: API keys, intake reads, webhooks;
- ``ops_queries``: operator views and actions (replay, skip, audit), metrics gauges, notices,
  authority notifications.

Elsewhere in the core, two modules keep a few Core statements beside the only logic that uses
them: ``worker.pull_forward`` (due times after an outage) and ``worker.secret_keys`` (key
rotation).
"""
