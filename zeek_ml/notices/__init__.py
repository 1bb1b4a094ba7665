"""Verdicts -> notices. One notice per connection or per incident (:mod:`.notice`,
:mod:`.incidents`), direction and severity (:mod:`.site`), and site profiles (:mod:`.profile`).

May import: :mod:`zeek_ml.model` and below.
"""
