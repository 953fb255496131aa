"""Drills: plans of variants, and the runner that sends them."""

from refcal.drills.plan import Variant, identity_variant, plan_variants, request_key

__all__ = ["Variant", "identity_variant", "plan_variants", "request_key"]
