"""Tickets, one home: the ticket file's schema, loading with validation, saving, checksum,
stage strings and EAN codes (schema), and the human description with costs (describe).
Imports util/ (and cost/ and models/ only to describe)."""
