"""Nucleus detectors: the weight-free classical detector (offline default) and measurements."""
