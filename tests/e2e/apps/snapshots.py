"""The app of the snapshot suite: a counter, a workflow waiting on promises, a sleeping handler
and an awakeable waiter (reused from the other suites' apps), served by ``python -m sdk``."""

from __future__ import annotations

import sdk as restate
from tests.e2e.apps.comms import awakeables, recorder, sleepy
from tests.e2e.apps.core import counter
from tests.e2e.apps.workflows import signals

app = restate.app(services=[counter, signals, sleepy, awakeables, recorder])
