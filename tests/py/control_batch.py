"""Appends a transaction marker (a control batch: a COMMIT or ABORT record) to a partition.

    control_batch.py BROKER TOPIC PARTITION [commit|abort]

Transactional producers end every transaction with such a marker, written by the broker; no
client API writes one, and the test broker (tansu 0.6.0) does not implement EndTxn. So this
sends the Kafka protocol's Produce request (v3) itself, with a record batch (v2) whose
attributes say "transactional, control": the same bytes a Kafka broker appends at the end of a
transaction. tansu stores the batch's attributes and serves it back as a control batch, which
consumers never hand out as a record. Prints the marker's offset.
"""

import socket
import struct
import sys
import time

# CRC-32C (Castagnoli), reflected, as record batch v2 uses.
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def control_batch(commit: bool, producer_id: int = 1000, epoch: int = 0) -> bytes:
    key = struct.pack(">hh", 0, 1 if commit else 0)  # version 0, type COMMIT(1)/ABORT(0)
    value = struct.pack(">hi", 0, 0)  # version 0, coordinator epoch 0
    body = (
        b"\x00"  # record attributes
        + varint(0)  # timestamp delta
        + varint(0)  # offset delta
        + varint(len(key)) + key
        + varint(len(value)) + value
        + varint(0)  # headers
    )
    record = varint(len(body)) + body
    now = int(time.time() * 1000)
    # attributes: bit 4 transactional, bit 5 control; no compression.
    after_crc = struct.pack(">hiqqqhii", 0x30, 0, now, now, producer_id, epoch, -1, 1) + record
    after_length = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def produce(broker: str, topic: str, partition: int, batch: bytes) -> int:
    host, port = broker.rsplit(":", 1)
    body = (
        struct.pack(">h", -1)  # transactional_id: null
        + struct.pack(">hi", -1, 30000)  # acks all, timeout
        + struct.pack(">i", 1) + string(topic)
        + struct.pack(">i", 1) + struct.pack(">i", partition)
        + struct.pack(">i", len(batch)) + batch
    )
    request = struct.pack(">hhi", 0, 3, 7) + string("lakesink-tests") + body
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _read(s, 4))[0]
        answer = _read(s, size)
    # correlation id, [topic: name, [partition: index, error, base offset, append time]]
    pos = 4 + 4
    (name_len,) = struct.unpack_from(">h", answer, pos)
    pos += 2 + name_len + 4
    _index, error, base_offset = struct.unpack_from(">ihq", answer, pos)
    if error != 0:
        sys.exit(f"produce of the control batch to {topic}/{partition} failed: error code {error}")
    return base_offset


def _read(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            sys.exit("the broker closed the connection")
        buf += chunk
    return bytes(buf)


if __name__ == "__main__":
    broker, topic, partition = sys.argv[1], sys.argv[2], int(sys.argv[3])
    kind = sys.argv[4] if len(sys.argv) > 4 else "commit"
    print(produce(broker, topic, partition, control_batch(kind == "commit")))
