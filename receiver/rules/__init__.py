"""The monitoring centre's daily rules, as pure cores (issue 18).

Each module here decides one rule from data and an explicit time; none
reads a clock, opens a socket or touches a store, and none imports the
receiver's application, listeners, console or store backends.  The store's
ingest plan (receiver.ingest), the scheduler task, the CLI and the console
call them with what the store supplies; docs/rules-design.md says which
rows each needs and where it is called from.

- :mod:`receiver.rules.schedules`: opening and closing schedules per
  partition; the receiver's own open/close exception events (450-454).
- :mod:`receiver.rules.testmode`: accounts, partitions and zones placed on
  test for a bounded time.
- :mod:`receiver.rules.periodic`: a panel that owes a 602 periodic test and
  missed it (358), riding on the supervision heap.
- :mod:`receiver.rules.hygiene`: runaway suppression, alarm grouping and
  restore handling.
- :mod:`receiver.rules.reports`: the centre's reports over alarm, audit
  and disposition rows, as CSV and a printable HTML page.
"""
