//! The in-memory store passes the same store conformance suite as the SQLite store.
use std::sync::Arc;

use mostro_testkit::MemStore;
use mostro_testkit::store_suite;

#[test]
fn mem_store_passes_the_store_suite() {
    futures::executor::block_on(store_suite::run_all(&|| Arc::new(MemStore::new())));
}
