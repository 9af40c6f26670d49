//! The unit tests of the binding's modules that do not touch the NIF API (option parsing, the
//! delivery barrier), compiled here without rustler: a test harness linked with the NIF library
//! would need the `enif_*` symbols that only the BEAM provides.

// Only the tested parts of these modules are used here; the rest is used by the NIF library.
#![allow(dead_code)]

#[path = "../src/deliveries.rs"]
mod deliveries;
#[path = "../src/options.rs"]
mod options;
