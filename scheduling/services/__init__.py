"""Every write operation of the product. Module-level functions, keyword-only
arguments, one transaction each, domain errors only."""
