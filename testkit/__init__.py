"""The Guardline test kit: the panels and receivers a test, a benchmark,
the HIL harness or the demo runs, and the few tools to drive them.

One home for each:

==========================  =====================================================
``testkit.vm``              where the MicroPython VM and mpy-cross are
                            (``$GUARDLINE_MICROPYTHON`` first)
``testkit.control``         the control protocol's client: the sans-I/O codec,
                            the sync ``SimControl`` (a sim's socket) and the
                            asyncio ``ControlChannel`` (any serial_for_url port)
``testkit.panel``           ``PanelProcess``: the firmware under the VM with the
                            sim board, as a process
``testkit.inproc``          ``InProcessPanel``: the same firmware in this
                            process, on a virtual clock, reporting in memory to
                            the receiver's session core (milliseconds, no VM)
``testkit.session_panel``   ``SessionPanel``: only the panel's session core over
                            real sockets (load generation, receiver tests)
``testkit.vehicle``         ``RouteDrive``: a vehicle unit's track points along a
                            GPX route (the sim's GPS replay, the firmware's
                            report policy) as POSITION messages for a
                            ``SessionPanel``
``testkit.receiver``        ``ReceiverProcess``: ``guardline-receiver serve`` as a
                            process
``testkit.tiny_receiver``   ``TinyReceiver`` / ``TinyDc09Receiver``: a few-line
                            receiver for firmware tests
``testkit.dispatch``        ``JsonLinesSink``: a dispatch centre's end
``testkit.configs``         ``scenario_config``, ``TEST_KEY``: test panel configs
``testkit.app_rig``         ``AppRig``: the real app under the VM, counting what
                            it allocates (tests/vm_app_rig.py)
``testkit.wait``            ``wait_until`` / ``wait_until_sync``: poll, never sleep
``testkit.net``             ``free_port``
==========================  =====================================================

The kit imports no test framework: the product's own simulator tools
(``guardline-panel sim``/``ctl``/``walk-test --auto``) and the demo use it
too.  docs/qa.md, "The test kit", is the guide.
"""
