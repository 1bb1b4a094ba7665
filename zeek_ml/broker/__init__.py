"""``zeek-ml broker``: score connections Zeek publishes and send verdicts back as events.

:mod:`~zeek_ml.broker.transport` is the interface (Broker today; a WebSocket
transport for Zeek 9 can follow), :mod:`~zeek_ml.broker.bindings` finds Broker's
Python bindings, :mod:`~zeek_ml.broker.codec` turns events into conn frames and
verdicts into events, :mod:`~zeek_ml.broker.service` is the loop.
"""
