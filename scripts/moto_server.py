"""moto's server with one request at a time, and one fix to its speed.

DynamoDB applies every write, condition and transaction atomically per item; moto's threaded
server does not (two concurrent conditional updates of one item can both read the old value).
Serializing requests gives the tests DynamoDB's atomicity, so concurrency tests exercise our
code's guarantees instead of moto's races. Our own multi-request sequences still interleave.

moto's TransactWriteItems deep-copies the table once per action (for rollback), so a
100-action transaction copies the table 100 times; here it is copied once per call. Behaviour
is unchanged: the copy is only read if the transaction is rolled back. A rolled-back
transaction also keeps the table's stream: moto would otherwise leave readers on a shard
holding records of the undone writes, and reuse their sequence numbers for later writes (a
stream reader then skips real records).

Usage: python3 scripts/moto_server.py PORT   (binds 127.0.0.1 only)
"""

import copy
import sys
import threading

import moto.dynamodb.models as dynamodb_models
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class _CopyOncePerCall:
    """Stands in for the `copy` module inside one transact_write_items call."""

    def __init__(self):
        self._copies = {}

    def deepcopy(self, value):
        key = id(value)
        if key not in self._copies:
            self._copies[key] = copy.deepcopy(value)
        return self._copies[key]


def _copy_tables_once() -> None:
    backend = dynamodb_models.DynamoDBBackend
    original = backend.transact_write_items

    def transact_write_items(self, transact_items):
        # The live stream shard of every table, and how many records it holds now.
        shards = {
            name: (table.stream_shard, len(table.stream_shard.items))
            for name, table in self.tables.items()
            if table.stream_shard is not None
        }
        # Safe to swap a module global: requests are served one at a time (see below).
        dynamodb_models.copy = _CopyOncePerCall()
        try:
            return original(self, transact_items)
        finally:
            dynamodb_models.copy = copy
            for name, (shard, length) in shards.items():
                table = self.tables.get(name)
                if table is not None and table.stream_shard is not shard:
                    # Rolled back: moto put back a copy of the table, stream shard included,
                    # while readers' shard iterators still point at the live shard, which holds
                    # records of the writes just undone (whose sequence numbers the copy will
                    # hand out again). Keep the live shard, without those records.
                    del shard.items[length:]
                    shard.table = table
                    table.stream_shard = shard

    backend.transact_write_items = transact_write_items


def main() -> None:
    port = int(sys.argv[1])
    _copy_tables_once()
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            body = app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()

    run_simple("127.0.0.1", port, serialized, threaded=True)


if __name__ == "__main__":
    main()
