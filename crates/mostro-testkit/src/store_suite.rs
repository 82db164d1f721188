//! Conformance suite for the `Store` port (written by the storage work).
