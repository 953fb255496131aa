"""Drills: plans of variants, and the runner that sends them."""

from refcal.drills.plan import identity_variant, plan_variants, request_key
from refcal.records import Variant

__all__ = ["Variant", "identity_variant", "plan_variants", "request_key"]
