"""The compiled rules as JSON: what `zonectl compile --target ir` prints, for review and for diffing.

Every backend renders from this IR, so seeing it is the shortest way to tell a policy problem from a
backend problem. Each rule is in its one JSON form, the one the controller publishes
(``zonectl.core.published.rule_to_dict``); keys are sorted; matches are always ``value/mask`` text.
"""

from __future__ import annotations

import json
from typing import Iterable

from ..core.published import rule_to_dict
from ..core.rules import Rule
from . import checks


def render_ir(rules: Iterable[Rule]) -> str:
    return json.dumps([rule_to_dict(checks.rule(r)) for r in rules], indent=2, sort_keys=True) + "\n"
