"""``zeek-ml watch``: follow a live conn.log across rotation, score, write outputs exactly once
(:mod:`.service`), its Prometheus metrics (:mod:`.metrics`) and systemd unit (:mod:`.systemd`).
"""
