"""The operator's work around an alarm (issue 17): action plans, contacts
and call lists, dispositions, claiming, escalation, site notes and panel
command words.

Every module here is a sans-I/O core: fed data and explicit time (Unix
seconds), it decides and returns typed records (the changes to write, each
with its compare-and-set condition and its audit records); it reads no
clock, no socket and no store.  The store (SQLite and PostgreSQL), the API,
the CLI and the console pages are the edges that apply them
(docs/workflow-design.md is the integration's brief).

=================  ======================================================
``common``         the two error families, file checks, hashes
``plans``          action plans: file format, validation, resolution
                   (site > region > center-wide, code > class, fallback)
``steps``          an alarm's copy of its plan; the step state table
``contacts``       contacts, availability, call lists, call outcomes,
                   passcode hashing and checking; site files
``dispositions``   the disposition list and its report categories
``claims``         who handles an alarm; claim, take-over, release races
``escalation``     timers per class and priority; the stateless scheduler
``notes``          permanent and temporary site notes; which are shown
``handling``       the decisions the interfaces share (open, act, call,
                   check a passcode, resolve, close automatically)
``audit``          the audit record and its sentences
``commands``       panel command confirmations and replies in words
=================  ======================================================

Leaves: these modules import ``protocol.contactid``, ``protocol.lean.glwire``
(trouble bits), ``receiver.alarms`` (states and words), ``receiver.routing``
(level names) and ``receiver.supervision`` (durations in words), and
nothing else of the receiver's.
"""
