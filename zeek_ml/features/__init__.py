"""Conn rows -> the model's input. Per-connection features and the feature specs (:mod:`.conn`),
and the per-host temporal context over what each host did just before (:mod:`.context`), with its
stream clock and checkpointable state.

May import: :mod:`zeek_ml.sources`, :mod:`zeek_ml.formats`.
"""
