"""Notices out. Zeek notice.log and the enriched conn log (:mod:`.logs`), the verdict file
Zeek's Input framework reads (:mod:`.verdict_file`), eve.json alerts (:mod:`.eve`), and verdict
events back to Zeek over Broker (:mod:`.broker`).

May import: :mod:`zeek_ml.notices` and below.
"""
