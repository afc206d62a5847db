"""napari integration: npe2 reader/writer, layer conversion, viewport-limited editing."""
