//! Integration tests: the real server on port 0, each test with its own PostgreSQL database.
//! Only the wallet (the MPP's ledger) is a test double. Run through `scripts/test`, which starts
//! a private PostgreSQL when DATABASE_URL is unset.

mod authorization;
mod bad_input;
mod cancel_states;
mod chaos;
mod db_faults;
mod demo_wallet;
mod due_times;
mod engine;
mod engine_limits;
mod failover;
mod idempotency;
mod internal_api;
mod load_shedding;
mod money_moved;
mod money_path;
mod operations;
mod seeds;
mod settlement_day;
mod signatures;
mod support;
mod wallet_values;
mod window_edges;
