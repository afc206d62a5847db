"""What the report says: the numbers a pathologist and a surgeon sign, drafted from a results folder.

- :mod:`.margins`: tumour-to-edge clearance per ink colour (the epidermal surface is no margin).
- :mod:`.lesion_source`: where the lesion comes from (drawn > tissue model > weight-free map > proposal).
- :mod:`.breslow`: Breslow thickness with its measuring line; ulceration.
- :mod:`.tils`: tumour-infiltrating lymphocytes (Clark grade).
- :mod:`.mitotic_rate`: mitoses per mm² (read from ``summary.json``, only when validated).
- :mod:`.staging`: pT (AJCC 8th, melanoma), only when the user states the diagnosis.
- :mod:`.synoptic`: the one-page synoptic draft (``synoptic.json``, ``synoptic_report.pdf`` / ``.html``).

Nothing here diagnoses; every number carries its source and "not assessed" when evidence is missing.
"""
