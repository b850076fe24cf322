"""Encoders: a rendered picture or a view -> the bytes one wire format carries. No I/O."""
