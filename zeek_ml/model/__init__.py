"""Features -> scores. Loading the shipped ONNX models and checking their feature spec
(:mod:`.conn_model`), and the streaming scorer that carries per-host context across batches and
yields :class:`~zeek_ml.model.scorer.Verdicts` (:mod:`.scorer`).

May import: :mod:`zeek_ml.features` and below.
"""
