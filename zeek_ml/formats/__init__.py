"""Zeek's formats, shared by every stage: the conn and notice schemas (:mod:`.schema`), Zeek's
escaping (:mod:`.escape`), the TSV/JSON log writer (:mod:`.writer`), the ZeekML records and events
the Zeek package declares (:mod:`.records`), and safe, atomic file output (:mod:`.safeio`).

May import: nothing else of zeek_ml (this is the bottom).
"""
