"""Writes: every operation that changes the product's data. Module-level functions,
keyword-only arguments, one transaction each, domain errors only.

Reads that only present (reports, revenue, a client's history) are in
scheduling/selectors/. The exceptions are the reads the writes themselves are made of
and re-check under their locks: availability, capacity, travel, working time and the
shared helpers in common.py stay here beside the booking engine that uses them.
"""
