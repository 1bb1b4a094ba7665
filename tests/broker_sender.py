"""A Broker peer in its own process, standing in for a Zeek that sends connections and then goes away.

``python -m tests.broker_sender PORT N`` listens on 127.0.0.1:PORT, waits for zeek-ml to peer, publishes
the first N connections of the sample log as ``ZeekML::conn_finished`` events, prints ``sent`` and
exits when its standard input closes. A process, because Broker 2.x keeps an endpoint's listening
socket until the process ends: "Zeek is back on the same port" needs the first one gone.
"""

from __future__ import annotations

import sys
import time

import pandas as pd

from tests.conftest import SAMPLE_LOGS
from zeek_ml.formats.records import CONN_EVENT, CONN_TOPIC
from zeek_ml.services.broker.bindings import import_broker
from zeek_ml.sinks.broker import conn_records
from zeek_ml.sources.files import iter_batches


def main(port: int, count: int) -> int:
    broker = import_broker()
    frame = pd.concat(list(iter_batches([str(SAMPLE_LOGS / "001-zeek-scenario-malicious.labeled-conn.log.gz")])))
    records = conn_records(broker, frame.reset_index(drop=True))[:count]
    endpoint = broker.Endpoint()
    if endpoint.listen("127.0.0.1", port) != port:
        print(f"cannot listen on {port}", flush=True)
        return 1
    deadline = time.monotonic() + 60
    while not any(p.status == broker.PeerStatus.Peered for p in endpoint.peers()):
        if time.monotonic() > deadline:
            print("no peer", flush=True)
            return 1
        time.sleep(0.05)
    time.sleep(0.3)  # let the peer's subscriptions settle, as Zeekish.wait_peered does
    for record in records:
        endpoint.publish(CONN_TOPIC, broker.zeek.Event(CONN_EVENT, record))
    print("sent", flush=True)
    sys.stdin.read()
    endpoint.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
