"""Guardline hardware-in-the-loop harness (``guardline-hil``).

Layered after labgrid (docs/qa.md):

- ``hil.link``: fault-injection links between a panel and a receiver
  (TCP, UDP, serial), seeded and scripted.
- ``hil.target``: what a panel under test can do (the protocol), and a
  driver per kind of target: the simulated board, a real board over its
  console UART, and the relay/GPIO fixture that drives a real board's zones.
- ``hil.strategy``: brings a target to a named state (off, booted,
  reporting, armed_away, disarmed).
- ``hil.plugin``: the pytest plugin (``--hil-target``; fixtures ``panel``,
  ``receiver``, ``link``); ``hil.scenarios``: the suite QA runs.
- ``hil.report``: per-scenario timelines as text and HTML.
"""
