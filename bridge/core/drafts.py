"""What a draft id says about its order: Bik's ids carry the moment the draft was made."""
from __future__ import annotations

import re
from typing import Optional

# Bik's draft ids look like nb_<unix seconds>_<random> (Bik's placeOrder contract).
_BIK_DRAFT = re.compile(r"^nb_(\d{9,11})_[A-Za-z0-9]+$")
# Clocks of Bik, the bridge's store and the platform may disagree by this much; a search reaches this far back.
CLOCK_MARGIN_SECONDS = 300.0


def draft_created_at(draft_order_id: str) -> Optional[float]:
    """The unix time inside a Bik draft id, or None when the id has another shape."""
    match = _BIK_DRAFT.match(draft_order_id)
    return float(match.group(1)) if match else None
