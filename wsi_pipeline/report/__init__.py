"""What the report says: the numbers a pathologist and a surgeon sign, drafted from a results folder.

- :mod:`.margins`: tumour-to-edge clearance per ink colour; the lesion (drawn > tissue model >
  weight-free map); the epidermal surface (and an ulcer base) is no margin.
- :mod:`.tissue_map`: ``regions.geojson`` as the report reads it, and which map made it.
- :mod:`.skin_surface`: the granular line and the ulcers; :mod:`.breslow`: Breslow thickness
  with its measuring line, ulceration.
- :mod:`.tils`: tumour-infiltrating lymphocytes (Clark grade, per mm of tumour base).
- :mod:`.mitotic_rate`: mitoses per mm² (read from ``summary.json``, only when validated).
- :mod:`.staging`: stated diagnosis and pT (AJCC 8th, melanoma only).
- :mod:`.synoptic` (+ :mod:`.synoptic_render`): the one-page draft, ``write_synoptic``.
- :mod:`.findings`: one line of the draft (value, source, reason when not assessed).

Nothing here diagnoses; every number carries its source and "not assessed" when evidence is missing.
"""
