"""Several replicas on one PostgreSQL database: how they share the work without a cluster.

The database is the one shared source of truth and the one coordination point, as DBOS,
Procrastinate, Oban and River do it; replicas never talk to each other directly.
  * `replicas`: each replica's row, renewed by a heartbeat (who is alive, for `doctor` and
    for taking over a dead replica's inbox rows);
  * `claims`: a task is claimed with `FOR UPDATE SKIP LOCKED` and held under a lease the
    heartbeat renews; a task whose lease ran out goes back to the queue for any replica;
  * `leader`: one lease row; only its holder runs the once-only scheduled jobs;
  * `wakeups`: LISTEN/NOTIFY carries "there is work", "a reply came", "cancel this",
    "an approval was decided" to the replica concerned within milliseconds, and a poll every
    few seconds covers a NOTIFY that a connection pooler dropped;
  * `inbox`: the pre-ack inbox as a table, so a replica needs no persistent disk.

All of it is PostgreSQL only: SQLite runs one process. Lease times are the database
server's clock (`DB_NOW`), so replicas whose clocks disagree still agree on who holds what.
"""

from __future__ import annotations

import os
import secrets
import socket

#: The database server's clock in epoch seconds, as the lease columns hold it.
DB_NOW = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
#: How long a lease holds without renewal unless `[cluster] lease` says otherwise.
DEFAULT_LEASE = 30.0


def replica_id() -> str:
    """A name for this process, unique across restarts: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
