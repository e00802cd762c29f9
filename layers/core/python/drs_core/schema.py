"""DynamoDB table shapes and key layout, shared by the runtime adapters, the CDK infra and the tests.

Pure constants and builders: no boto3 import, so infrastructure code can use it without pulling in the
runtime. ``*_table_kwargs`` return ``create_table`` arguments for the low-level client (tests, the
sandbox); the CDK constructs read the same constants so the two never drift.
"""

from __future__ import annotations

import hashlib
from typing import Any

# --- State table (single table: device, slot and order items under one partition per device) ---
STATE_PK = "pk"
STATE_SK = "sk"
STATE_STREAM_VIEW_TYPE = "NEW_AND_OLD_IMAGES"

DEVICE_PREFIX = "DEVICE#"
SLOT_PREFIX = "SLOT#"
ORDER_PREFIX = "ORDER#"
DEVICE_SK = "DEVICE"

# GSI for the companion app's device list. Sparse: only device items carry ``ownerId``.
OWNER_INDEX = "owner"
OWNER_INDEX_PK = "ownerId"
OWNER_INDEX_SK = STATE_PK
OWNER_INDEX_PROJECTION = "ALL"

# GSI the report planner pages through, one bucket an hour (docs/architecture.md §1 flow 5). Sparse: only
# device items carry ``reportBucket`` (derived from the serial, ``report_bucket``). It projects the
# device ``status`` so the planner skips unlinked devices without reading their items; a status changes
# rarely, so the index costs a write per lifecycle event, never per reading or per report. ~42 k devices
# per bucket at 1 M devices is one paginated Query an hour: no write sharding needed (see README).
REPORT_INDEX = "report"
REPORT_INDEX_PK = "reportBucket"
REPORT_INDEX_SK = STATE_PK
REPORT_INDEX_PROJECTION = "INCLUDE"
REPORT_INDEX_ATTRS = ("status",)  # items.Attr.STATUS
REPORT_BUCKETS = 24
# The reporting concern's own item in each device partition: lease and what was last reported.
REPORT_SK = "REPORT"

# Slot attribute the usage path sets and the stream filter of the reorder function matches on.
REORDER_DUE_ATTR = "reorderDue"
# The reorder function's event-source filter (Lambda event filtering, EventBridge pattern syntax): only
# stream records of slot items whose new image says a reorder is due invoke it. The CDK construct and the
# sandbox/test pumps (moto's ``EventPattern``) read this one definition.
REORDER_FILTER_PATTERN: dict[str, Any] = {
    "eventName": ["INSERT", "MODIFY"],
    "dynamodb": {
        "Keys": {STATE_SK: {"S": [{"prefix": SLOT_PREFIX}]}},
        "NewImage": {REORDER_DUE_ATTR: {"BOOL": [True]}},
    },
}

# Slot attribute the usage path sets when a refill shows a package was used up: DRS wants a slotStatus
# "when the contents of a slot are consumed", so the reorder function (its second filter) reports the
# slot at once and removes the flag. Refills are rare (one per package), so this costs nothing per reading.
SLOT_REPORT_DUE_ATTR = "slotReportDue"
SLOT_REPORT_FILTER_PATTERN: dict[str, Any] = {
    "eventName": ["INSERT", "MODIFY"],
    "dynamodb": {
        "Keys": {STATE_SK: {"S": [{"prefix": SLOT_PREFIX}]}},
        "NewImage": {SLOT_REPORT_DUE_ATTR: {"BOOL": [True]}},
    },
}
# Every filter of the reorder function's event source (Lambda passes a record matching any one).
REORDER_FUNCTION_FILTER_PATTERNS: tuple[dict[str, Any], ...] = (
    REORDER_FILTER_PATTERN,
    SLOT_REPORT_FILTER_PATTERN,
)

# --- Tokens table (one item per device; ciphertext only) ---
TOKENS_PK = "serial"
# TTL attribute of the table: only a half-done linking's held tokens carry it (token_vault.py).
TOKENS_TTL_ATTR = "expiresAt"

# --- Idempotency table (Powertools DynamoDBPersistenceLayer defaults) ---
IDEMPOTENCY_PK = "id"
IDEMPOTENCY_TTL_ATTR = "expiration"

BILLING_MODE = "PAY_PER_REQUEST"


def device_pk(serial: str) -> str:
    """Partition key of every item belonging to one device."""
    return f"{DEVICE_PREFIX}{serial}"


def serial_from_pk(pk: str) -> str:
    """Inverse of ``device_pk``."""
    if not pk.startswith(DEVICE_PREFIX):
        raise ValueError(f"not a device partition key: {pk!r}")
    return pk[len(DEVICE_PREFIX) :]


def device_key(serial: str) -> dict[str, str]:
    """Primary key of the device item, as plain strings (``{"pk": ..., "sk": "DEVICE"}``)."""
    return {STATE_PK: device_pk(serial), STATE_SK: DEVICE_SK}


def slot_key(serial: str, slot_id: str) -> dict[str, str]:
    """Primary key of a slot item (``sk = SLOT#<slotId>``)."""
    return {STATE_PK: device_pk(serial), STATE_SK: f"{SLOT_PREFIX}{slot_id}"}


def order_key(serial: str, instance_id: str) -> dict[str, str]:
    """Primary key of an order item (``sk = ORDER#<instanceId>``)."""
    return {STATE_PK: device_pk(serial), STATE_SK: f"{ORDER_PREFIX}{instance_id}"}


def report_key(serial: str) -> dict[str, str]:
    """Primary key of the device's report item (``sk = REPORT``)."""
    return {STATE_PK: device_pk(serial), STATE_SK: REPORT_SK}


def report_bucket(serial: str) -> str:
    """The hourly report bucket of a device, "00".."23": a stable hash of the serial, evenly spread."""
    digest = hashlib.sha256(serial.encode("utf-8")).digest()
    return f"{int.from_bytes(digest[:8], 'big') % REPORT_BUCKETS:02d}"


def state_table_kwargs(table_name: str) -> dict[str, Any]:
    """``create_table`` arguments for the state table: keys, sparse owner and report GSIs, stream."""
    return {
        "TableName": table_name,
        "KeySchema": [
            {"AttributeName": STATE_PK, "KeyType": "HASH"},
            {"AttributeName": STATE_SK, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": STATE_PK, "AttributeType": "S"},
            {"AttributeName": STATE_SK, "AttributeType": "S"},
            {"AttributeName": OWNER_INDEX_PK, "AttributeType": "S"},
            {"AttributeName": REPORT_INDEX_PK, "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": OWNER_INDEX,
                "KeySchema": [
                    {"AttributeName": OWNER_INDEX_PK, "KeyType": "HASH"},
                    {"AttributeName": OWNER_INDEX_SK, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": OWNER_INDEX_PROJECTION},
            },
            {
                "IndexName": REPORT_INDEX,
                "KeySchema": [
                    {"AttributeName": REPORT_INDEX_PK, "KeyType": "HASH"},
                    {"AttributeName": REPORT_INDEX_SK, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": REPORT_INDEX_PROJECTION,
                    "NonKeyAttributes": list(REPORT_INDEX_ATTRS),
                },
            },
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": STATE_STREAM_VIEW_TYPE},
        "BillingMode": BILLING_MODE,
    }


def tokens_table_kwargs(table_name: str) -> dict[str, Any]:
    """``create_table`` arguments for the tokens table (partition key ``serial``, on-demand)."""
    return {
        "TableName": table_name,
        "KeySchema": [{"AttributeName": TOKENS_PK, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": TOKENS_PK, "AttributeType": "S"}],
        "BillingMode": BILLING_MODE,
    }


def idempotency_table_kwargs(table_name: str) -> dict[str, Any]:
    """``create_table`` arguments for the Powertools idempotency table (partition key ``id``).

    TTL is not part of ``create_table``: apply ``idempotency_ttl_kwargs`` with ``update_time_to_live``.
    """
    return {
        "TableName": table_name,
        "KeySchema": [{"AttributeName": IDEMPOTENCY_PK, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": IDEMPOTENCY_PK, "AttributeType": "S"}],
        "BillingMode": BILLING_MODE,
    }


def idempotency_ttl_kwargs(table_name: str) -> dict[str, Any]:
    """``update_time_to_live`` arguments enabling TTL on the idempotency table's ``expiration``."""
    return {
        "TableName": table_name,
        "TimeToLiveSpecification": {"Enabled": True, "AttributeName": IDEMPOTENCY_TTL_ATTR},
    }
