"""Vehicle units at the receiver (issue 19; docs/mobile.md, "Receiver"):
cash-in-transit vans and patrol cars report positions (receiver.native
stores them, receiver.records.TrackPoint); this package decides what the
receiver does with them.

    fw.py          the firmware's own geometry and rules (firmware/device
                   geo.py, vehicle.py, vehicle_config.py), loaded under
                   CPython: device and receiver judge with the same code
    geofences.py   allowed zones, route corridors and rule settings per
                   account, from the receiver config's GeoJSON file
    watch.py       the receiver's re-check of a van's route (sans-I/O):
                   left its corridor (170), stopped too long (171), silent
                   with the ignition on (175)
    patrols.py     patrol cars (sans-I/O): the nearest available ones to an
                   alarm, arrival on scene, the audit sentences
    loop.py        the task that feeds the watches from the store's track
                   feed, stores what they raise, records arrivals and
                   prunes tracks (one owner per account with several
                   receivers)
    service.py     what the console asks of it: units on the map,
                   proposals, dispatch, a patrol's status
"""
