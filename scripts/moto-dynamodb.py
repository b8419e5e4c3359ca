"""A DynamoDB-compatible server for weft's tests and benchmarks: moto's
DynamoDB backend (pinned in scripts/dynamodb-local) served on loopback.

Two changes to a plain `moto_server`, both about the transactions weft's
dynamodb store relies on:

- one request at a time (`threaded=False`): moto's backend has no locks,
  so two TransactWriteItems handled in two threads could interleave
  their condition checks and writes, which real DynamoDB never does;
- the rollback snapshot of TransactWriteItems copies the partitions'
  dicts and deep-copies only the items the transaction names, once per
  table, instead of deep-copying the whole table once per action (which
  makes a 100-action transaction on a 20,000-item table take minutes).

Usage: python moto-dynamodb.py PORT  (binds 127.0.0.1 only)
"""

import copy
import sys

from moto.dynamodb import models as ddb_models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class _CheapSnapshot:
    """Stands in for the `copy` module inside transact_write_items."""

    def __init__(self, transact_items):
        self.keys = {}
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            self.keys.setdefault(op.get("TableName"), []).append(op.get("Key") or op.get("Item") or {})
        self.done = {}

    def deepcopy(self, value, memo=None):
        if not isinstance(value, Table):
            return copy.deepcopy(value, memo)
        if id(value) in self.done:
            return self.done[id(value)]
        snap = copy.copy(value)
        snap.items = copy.copy(value.items)
        snap.items.clear()
        for h, part in value.items.items():
            snap.items[h] = dict(part) if isinstance(part, dict) else part
        for attrs in self.keys.get(value.name, []):
            if value.hash_key_attr not in attrs:
                continue
            h = DynamoType(attrs[value.hash_key_attr])
            if h not in snap.items:
                continue
            if value.range_key_attr:
                if value.range_key_attr not in attrs:
                    continue
                r = DynamoType(attrs[value.range_key_attr])
                if r in snap.items[h]:
                    snap.items[h][r] = copy.deepcopy(snap.items[h][r])
            else:
                snap.items[h] = copy.deepcopy(snap.items[h])
        self.done[id(value)] = snap
        return snap


_transact = ddb_models.DynamoDBBackend.transact_write_items


def _transact_write_items(self, transact_items):
    saved = ddb_models.copy
    ddb_models.copy = _CheapSnapshot(transact_items)
    try:
        return _transact(self, transact_items)
    finally:
        ddb_models.copy = saved


ddb_models.DynamoDBBackend.transact_write_items = _transact_write_items


def main():
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
