#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/seeds/<target>/): the contract's example
records (docs/wire-format.md, "Input records") in JSON and MessagePack, each behind the flags byte that
tally_fuzz::Flags reads, plus a few stored values for decode_state. Run it from anywhere; the
output is committed, so this only needs re-running when the records change."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

TX = {
    "type": "pos.transaction", "id": "0042-R03-20261127-000123", "store": "0042", "register": "R03",
    "seq": 123, "occurred_at": "2026-11-27T10:15:03-05:00", "business_day": "2026-11-27", "currency": "USD",
    "lines": [
        {"line": 1, "sku": "100234", "qty": "2", "unit_price": "19.99", "discount": "2.00", "tax": "2.88"},
        {"line": 2, "sku": "100987", "qty": "-1", "unit_price": "5.00", "tax": "-0.40", "restock": True,
         "return_of": "0042-R01-20261120-000044"},
    ],
    "tenders": [{"type": "card", "amount": "35.46"}], "voids": None,
}
TX_NUMBERS = dict(TX, id="T-num", lines=[{"line": 1, "sku": "100234", "qty": 2, "unit_price": 19.99, "tax": 1.6e0}])
VOID = {"type": "pos.transaction", "id": "T-void", "store": "0042", "occurred_at": "2026-11-27T11:00:00Z",
        "voids": "0042-R03-20261127-000123"}
MOVE = {"type": "inventory.movement", "id": "INV-0042-778812", "store": "0042",
        "occurred_at": "2026-11-27T10:17:40-05:00", "business_day": "2026-11-27", "reason": "sale",
        "ref": "0042-R03-20261127-000123", "lines": [{"sku": "100234", "qty": "-2"}]}
CLOSE = {"type": "pos.day_close", "id": "CLOSE-0042-2026-11-27", "store": "0042", "business_day": "2026-11-27",
         "occurred_at": "2026-11-27T22:05:00-05:00", "transaction_count": 1234, "net_sales": "45678.90",
         "tax": "3654.31", "tenders": [{"type": "card", "amount": "40012.20"}, {"type": "cash", "amount": "9321.01"}]}


def mp(v):
    """A minimal MessagePack encoder: enough for the records above."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data)


# Flags byte: bits 0-1 subject (0 pos.0042, 1 inventory.0042), bits 2-3 content type
# (0 none, 1 json, 2 msgpack); see tally_fuzz::Flags.
records = [("tx", 0, TX), ("tx_numbers", 0, TX_NUMBERS), ("void", 0, VOID), ("move", 1, MOVE), ("close", 0, CLOSE)]
for name, subject, record in records:
    text = json.dumps(record).encode()
    packed = mp(record)
    write("decode_input", f"{name}.json", bytes([subject]) + text)
    write("decode_input", f"{name}.json_ct", bytes([subject | 0b0100]) + text)
    write("decode_input", f"{name}.msgpack", bytes([subject]) + packed)
    write("decode_input", f"{name}.msgpack_ct", bytes([subject | 0b1000]) + packed)
write("decode_input", "subject_in_data", b"\x03retail.pos.0042\n" + json.dumps(TX).encode())

# apply_input: a day of one store in one input, messages separated as tally_fuzz expects.
sep = b"\n~~\n"
day = [bytes([0]) + json.dumps(TX).encode(), bytes([1]) + json.dumps(MOVE).encode(),
       bytes([0]) + json.dumps(VOID).encode(), bytes([0]) + json.dumps(CLOSE).encode()]
write("apply_input", "day.json", sep.join(day))
write("apply_input", "day.msgpack", sep.join([bytes([0]) + mp(TX), bytes([1]) + mp(MOVE), bytes([0]) + mp(CLOSE)]))
write("apply_input", "tx_twice", sep.join([bytes([0]) + json.dumps(TX).encode()] * 2))

# decode_state: stored values as tally writes them (rmp_serde named maps, decimals as strings).
write("decode_state", "sku_day", mp({"sold_units": "2", "returned_units": "1", "restocked_units": "1",
                                     "gross": "39.98", "discount": "2.00", "net": "37.98", "tax": "2.88",
                                     "inventory": {"Sale": "-2"}, "unmatched": [{"at": "2026-11-27T10:15:03-05:00", "id": "T"}]}))
write("decode_state", "store_day", mp({"currency": "USD", "transactions": 3, "lines": 4, "gross": "1", "net": "1",
                                       "tenders": {"card": "35.46"}, "registers": {"R03": [[1, 5], [7, 9]]},
                                       "duplicates": 1, "finalized": False}))
write("decode_state", "latest_price", mp({"unit_price": "19.99", "at": "2026-11-27T10:15:03-05:00"}))
write("decode_state", "store_clock", mp({"watermark": "2026-11-27T15:15:03Z", "last_event_proc": "2026-11-27T15:15:03Z",
                                         "advanced_proc": None, "next_timer": "2026-11-28T05:00:00Z"}))
write("decode_state", "outbox_entry", mp({"subject": "retail.dlq.decode", "msg_id": "dlq/7",
                                          "headers": [["Tally-Error", "decode"]], "payload": "x"}))
write("decode_state", "seen", mp({"fingerprint": 12345, "business_day": "2026-11-27", "transaction": None, "voided_by": None}))
