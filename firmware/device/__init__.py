# On the host, `firmware.device.config` (the validator `guardline-panel
# check` shares with the panel) is imported as part of this package.  The
# device modules import each other by their bare names, as they sit flat
# on a board's filesystem (`from cfgutil import ...`, `import
# vehicle_config`); this folder goes at the END of sys.path so that those
# names resolve on the host too, and never shadow a host module.  On a
# board this file does not exist.

import os as _os
import sys as _sys

_here = _os.path.dirname(_os.path.abspath(__file__))
if _here not in _sys.path:
    _sys.path.append(_here)
