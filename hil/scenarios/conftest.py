"""Load the HIL plugin when the scenarios are run with plain ``pytest
hil/scenarios`` (without ``-p hil.plugin`` or the installed entry point).
Registering it here, once, keeps its options from being added twice when
it is also loaded another way."""

import hil.plugin


def pytest_addoption(parser, pluginmanager):
    if not pluginmanager.is_registered(hil.plugin):
        pluginmanager.register(hil.plugin, "hil.plugin")
