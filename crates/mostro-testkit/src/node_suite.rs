//! Lightning node conformance suite.
