"""Guardline wire protocol (host side).

`protocol.spec` is the normative definition of the native protocol, written
with construct.  `protocol.lean` holds the lean codec and the panel-side
session core, written in the subset of Python that both CPython and
MicroPython run; the firmware carries those files, and the tests prove them
byte-identical to the construct definition.  `protocol.session` is the
receiver-side sans-I/O core.  `protocol.contactid` names the Contact ID
event codes, and `protocol.dc09` speaks SIA DC-09 for interoperability.
"""
