"""Making the models (optional extras: torch, onnx, matplotlib). Labelled captures and splits
(:mod:`.data`), the networks and ONNX export (:mod:`.nets`), honest evaluation: leave-one-capture-out
with baselines and ``zeek-ml evaluate`` (:mod:`.evaluate`), training and model cards (:mod:`.train`).

May import: :mod:`zeek_ml.sinks` and below; not :mod:`zeek_ml.services`.
"""
