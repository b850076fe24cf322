"""The far ends, simulated, shipped with the package: used by the tests, bench/ and the demo.

Importing these needs the ``test`` extra (websockets, pycryptodome, pytest); nothing outside
``display.testing`` imports them.
"""
