"""Connections in. Zeek logs (TSV and JSON, plain or gzip, files or stdin: :mod:`.files`,
:mod:`.zeeklog`, :mod:`.reading`), Suricata eve.json flows (:mod:`.eve`), a live log followed across
rotation (:mod:`.tail`), Zeek events over Broker or the WebSocket API (:mod:`.broker`), a user's
DataFrame from any usual loader (:mod:`.frame`), and the site's local networks (:mod:`.local_nets`).
Everything comes out as conn rows with Zeek's column names and types; bad input is a reject naming
file, line and field.

May import: :mod:`zeek_ml.formats`.
"""
