"""Guardline central-station receiver.

Modules (docs/receiver.md is the operator's guide):

- ``app``          the :class:`Receiver` application object (the wiring) and
                   the protocol-agnostic ingest path (``Receiver.ingest``)
- ``listeners``    TCP, UDP and serial adapters around protocol.session;
                   ``native`` what happens to a judged native frame
- ``dc09_listener``, ``dc09_core``  SIA DC-09 listeners and their judge
- ``listener_base``, ``link_policy``, ``admission``, ``connections``  what
                   every listener shares: sockets, busy and security policy,
                   who may connect, which stream carries which account
- ``accounts``, ``commands``, ``supervision_loop``, ``housekeeping``,
  ``pubsub``       the receiver's parts Receiver wires together
- ``messages``     the console's live messages (typed, one JSON shape each)
- ``records``      the typed records that cross the store's border, one JSON
                   shape each (events, alarms, audit, security events, outbox)
- ``ingest``       the ingest rules as a pure plan both backends execute
- ``store``        the storage interface (:class:`Store`); ``store_factory``
                   picks the backend a ``--db`` names
- ``sqlite_store`` the SQLite backend: WAL, synchronous=FULL, group commit
- ``pg_store``     the PostgreSQL backend (several receivers, one database)
- ``supervision``  sans-I/O line supervision (one heap for all accounts)
- ``alarms``       classification and the operator queue's state machine
- ``routing``      region/class -> dispatch centres (three levels)
- ``forwarder``    store-and-forward outputs (JSON lines over TCP, webhook)
- ``config``       receiver.toml loading and validation
- ``metrics``, ``http``, ``logfmt``, ``backoff``, ``cli``
- ``simpanel``, ``testing``  a simulated panel and test/bench helpers

The names below are imported lazily so that ``import receiver.supervision``
does not pull in the whole application.
"""

_EXPORTS = {
    "Receiver": "receiver.app", "Busy": "receiver.link_policy",
    "Store": "receiver.store", "StoreError": "receiver.store",
    "StoreUnavailable": "receiver.store", "StoreBusy": "receiver.store",
    "Account": "receiver.records", "EventRecord": "receiver.records",
    "IngestOutcome": "receiver.records", "SQLiteStore": "receiver.sqlite_store",
    "Config": "receiver.config", "ConfigError": "receiver.config",
    "load_config": "receiver.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError("module 'receiver' has no attribute %r" % name)
    import importlib

    m = importlib.import_module(mod)
    return getattr(m, "load" if name == "load_config" else name)
