//! End-to-end tests over the real `patientflow` binary and real Delta tables on disk.

mod bad_input;
mod crash;
mod gold;
mod gold_scale;
mod pipeline;
mod python_reader;
