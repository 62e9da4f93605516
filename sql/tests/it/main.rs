//! Integration tests of the query engine over a hand-checked gold fixture.

// Test code, helpers included: a panic with a message is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod admission;
mod counts;
mod fixture;
mod freshness;
mod plans;
mod properties;
mod scans;
mod slt;
mod synapse;
