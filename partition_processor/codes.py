"""Failure codes Cairn itself gives invocations (HTTP-like where one fits; 57x are Cairn's own).

One home for them, so the runtime, the state machine and the docs agree.
"""

from __future__ import annotations

# The endpoint could not be reached or closed the stream early (retried).
UNAVAILABLE = 503
# A journal entry, argument or message is larger than the size policy allows (terminal).
TOO_LARGE = 413
# A handler command carried an invalid id, key, name or number (terminal).
INVALID_COMMAND = 400
# The handler's code no longer matches its journal (retried: a redeploy may fix it).
JOURNAL_MISMATCH = 570
# The endpoint broke the protocol: an unexpected or undecodable message (retried).
PROTOCOL_ERROR = 571
# A record of this invocation could not be applied; the partition failed the invocation
# rather than stop (DESIGN §11, apply is total).
UNAPPLICABLE_RECORD = 572
# Too many ingress requests wait for one invocation's result already (--max-attached-requests);
# the ingress answers it 429 with Retry-After.
TOO_MANY_ATTACHED = 429
# The deployment the invocation is pinned to was removed with force (terminal: its journal
# belongs to code that is gone; move it to another deployment before removing to keep it).
DEPLOYMENT_GONE = 573
# A state patch named a version that is not the object's current one (nothing changed); the
# admin API answers it 409.
STATE_VERSION_MISMATCH = 409
