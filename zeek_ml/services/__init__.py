"""The long-running and batch jobs that wire the stages together: ``score`` (:mod:`.score`),
``watch`` (:mod:`.watch`: live tailing with exactly-once checkpoints), ``broker`` (:mod:`.broker`:
peering with Zeek), ``calibrate`` (:mod:`.calibrate`), and crash-safe outputs and checkpoints
(:mod:`.durable`).

May import: every stage below (:mod:`zeek_ml.sinks` down); not :mod:`zeek_ml.training`.
"""
