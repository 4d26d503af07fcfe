#!/usr/bin/env python3
"""Step "price" of the "orders" flow: a process function (SPEC §11).

nvent runs this file as a long-lived child and talks JSON lines with it:
one `describe` at startup, then one `job` at a time. Anything written to
stderr becomes a warn log of the job.
"""
import json
import sys

CONFIG = {
    "flow": {
        "name": "orders",
        "subscribes": ["order.received"],
        "emits": ["order.priced"],
    },
}


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def request(message):
    """A state.* request; the host answers with state.result, in order."""
    send(message)
    return json.loads(sys.stdin.readline())


def handle(job):
    jid = job["id"]
    order = job["data"]["order.received"]
    subtotal = order["subtotal"]
    discount = round(subtotal * 0.10, 2) if subtotal >= 100 else 0.0
    total = round(subtotal - discount, 2)
    send({"type": "log", "id": jid, "level": "info",
          "message": "priced order %s" % order["id"],
          "meta": {"subtotal": subtotal, "discount": discount}})
    answer = request({"type": "state.set", "id": jid, "rid": 1,
                      "key": "total", "value": total})
    if not answer["ok"]:
        send({"type": "error", "id": jid, "message": answer["error"]})
        return
    send({"type": "emit", "id": jid, "name": "order.priced",
          "payload": {"id": order["id"], "total": total}})
    send({"type": "result", "id": jid, "result": {"total": total}})


def main():
    for line in sys.stdin:
        message = json.loads(line)
        if message["type"] == "describe":
            send({"type": "config", "config": CONFIG})
        elif message["type"] == "job":
            handle(message)
        # "cancel": our jobs are short; we simply finish them


if __name__ == "__main__":
    main()
