"""Reads: the figures and histories the pages and the API show, computed from the
database and never changing it (the writes are in scheduling/services/).

- `reports`: the manager's report over a date range (appointments by status, sessions and
  revenue per therapist, trips per driver) and its CSV.
- `revenue`: the money in a report: collected by method and per day, outstanding
  balances, each therapist's collections.
- `client_history`: a client's past and upcoming bookings, messages and payments.

Plain functions with keyword arguments returning plain data; the QuerySet methods in
scheduling/models/ hold the reusable filters.
"""
