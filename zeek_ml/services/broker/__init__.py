"""``zeek-ml broker``: peer with Zeek over Broker (:mod:`.transport`, :mod:`.bindings`), score the
events it publishes and send verdicts back (:mod:`.service`), with Prometheus metrics (:mod:`.metrics`).
"""
