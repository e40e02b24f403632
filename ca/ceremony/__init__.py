"""Key ceremonies: strict YAML files, quorum (k-of-n) custody, signed transcripts."""

from ca.ceremony.runner import CeremonyContext, CeremonyRunner, Plan
from ca.ceremony.spec import Ceremony, load

__all__ = ["Ceremony", "CeremonyContext", "CeremonyRunner", "Plan", "load"]
