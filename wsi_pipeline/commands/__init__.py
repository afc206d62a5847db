"""One module per sub-command (see :mod:`wsi_pipeline.cli`)."""
