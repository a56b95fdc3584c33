"""Audit traces: typed events, a hash-chained writer and a verifier (no heavy imports)."""

from cogem.trace.events import TRACE_VERSION, Event, Manifest
from cogem.trace.seal import audit_key_from_env
from cogem.trace.verify import AuditReport, Problem, read_trace, repair_torn_tail, verify_trace
from cogem.trace.writer import TraceWriter

__all__ = [
    "TRACE_VERSION",
    "AuditReport",
    "Event",
    "Manifest",
    "Problem",
    "TraceWriter",
    "audit_key_from_env",
    "read_trace",
    "repair_torn_tail",
    "verify_trace",
]
