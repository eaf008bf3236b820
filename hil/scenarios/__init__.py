"""The HIL scenario suite QA runs (``guardline-hil run``; docs/qa.md).

Each module is a pytest file using the fixtures of :mod:`hil.plugin`
(``panel``, ``receiver``, ``link``, ``strategy``); the same files run
against the simulated panel and against a real board on a bench."""
