"""The live service: Segment-compatible ingest, real-time scores, MQL handoff (see docs/service.md)."""
