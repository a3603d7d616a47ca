"""One consumer-group member in its own process, so a test can kill -9 it.

    python group_member.py BOOTSTRAP TOPIC GROUP OUT_FILE [ASSIGNOR [GROUP_INSTANCE_ID]]

Subscribes with confluent-kafka (librdkafka), and appends to OUT_FILE one line per event:
`assign P,P,...` after every rebalance (the member's whole assignment), and `msg P OFFSET`
for every message, written and flushed before the offset is committed (commit after
processing). Runs until killed, or for 300 s at most; SIGTERM closes the consumer cleanly (a
static member, with a group instance id, then keeps its place in the group).
"""

from __future__ import annotations

import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError


def main() -> None:
    bootstrap, topic, group, out_path = sys.argv[1:5]
    assignor = sys.argv[5] if len(sys.argv) > 5 else "range"
    instance = {"group.instance.id": sys.argv[6]} if len(sys.argv) > 6 else {}
    out = open(out_path, "a", buffering=1)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    c = Consumer({
        **instance,
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "partition.assignment.strategy": assignor,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })

    # Eager assignors revoke everything then assign anew; cooperative ones add and remove a few:
    # tracking both as set updates gives the member's whole assignment either way.
    current: set[int] = set()

    def report():
        out.write("assign " + ",".join(map(str, sorted(current))) + "\n")

    def on_assign(_consumer, partitions):
        current.update(tp.partition for tp in partitions)
        report()

    def on_revoke(_consumer, partitions):
        current.difference_update(tp.partition for tp in partitions)
        report()

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not stop:
        msgs = c.consume(num_messages=500, timeout=0.2)
        done = [m for m in msgs if not m.error()]
        for m in msgs:
            if m.error() and m.error().code() != KafkaError._PARTITION_EOF:
                out.write(f"error {m.error()}\n")
        for m in done:
            out.write(f"msg {m.partition()} {m.offset()}\n")
        if done:
            out.flush()
            c.commit(asynchronous=False)
    c.close()


if __name__ == "__main__":
    main()
