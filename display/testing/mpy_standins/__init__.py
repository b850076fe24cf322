"""The ``display.testing.mpy_standins`` package."""
