//! The Lightning node conformance suite against the in-memory `FakeNode`.

use mostro_testkit::node_suite::{FakeNodeHarness, run_all};

#[test]
fn fake_node_passes_the_suite() {
    futures::executor::block_on(run_all(&FakeNodeHarness::new()));
}

#[test]
fn fake_node_passes_the_suite_twice_on_one_node() {
    let h = FakeNodeHarness::new();
    futures::executor::block_on(async {
        run_all(&h).await;
        run_all(&h).await;
    });
}
